"""Stale model: every Byzantine server sends an old copy of the correct servers' mean
model, the one of `delay` exchanges ago (the oldest kept until that many have passed)."""
from benchmark.api import ServerAttack

from server_attacks._models import copies


def craft(models, f, recipients, state, delay=20):
    history = state.setdefault("history", [])
    history.append(models.mean(dim=0))
    del history[:-(delay + 1)]
    return copies(history[0], f)


def check(n, f, delay):
    return None if delay >= 1 else f"delay must be at least 1 exchange, not {delay}"


server_attack = ServerAttack(
    name="stale",
    attack=craft,
    check=check,
    stateful=True,
    description="an old copy of the correct servers' mean model (from `delay` exchanges ago)",
    reference="El-Mhamdi et al., Genuinely distributed Byzantine machine learning, PODC 2020",
)
