"""Silence: the Byzantine servers send nothing; the rules combine the correct models
only (and are still told f_ps)."""
from benchmark.api import ServerAttack

server_attack = ServerAttack(
    name="silence",
    absent=True,
    description="the Byzantine servers send nothing (crashed or mute)",
    reference="El-Mhamdi et al., Genuinely distributed Byzantine machine learning, PODC 2020",
)
