"""No Byzantine server: every server is correct; the model rules are still told f_ps."""
from benchmark.api import ServerAttack

server_attack = ServerAttack(
    name="none",
    clean=True,
    description="No attack: all servers are correct and the gather and pull rules are "
                "still told f_ps",
    reference="-",
)
