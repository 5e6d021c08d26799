"""No attack: every worker is honest. The defense sees n honest rows and is still told f:
the accuracy a rule keeps when nobody attacks (the cost of its robustness)."""
from benchmark.api import Attack

attack = Attack(
    name="none",
    clean=True,
    version=2,  # 2: all n workers honest (1: the f Byzantine workers sent nothing)
    description="No attack: all n workers are honest and the defense is still told f "
                "(clean accuracy)",
    reference="-",
)
