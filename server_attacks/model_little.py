"""A little is enough, on models: every Byzantine server sends mean − factor·σ of the
correct servers' models (coordinate-wise), a model that stays inside their spread."""
from benchmark.api import ServerAttack

from server_attacks._models import copies, mean_and_spread


def craft(models, f, recipients, factor=1.5):
    mean, spread = mean_and_spread(models)
    return copies(mean - factor * spread, f)


def check(n, f, factor):
    return None if factor >= 0 else f"factor must be non-negative, not {factor}"


server_attack = ServerAttack(
    name="model-little",
    attack=craft,
    check=check,
    description="mean - factor * coordinate-wise std of the correct servers' models",
    reference="Baruch et al., A little is enough, NeurIPS 2019 (applied to models)",
)
