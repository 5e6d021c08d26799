"""Fall of empires, on models: every Byzantine server sends (1 − factor)·mean of the
correct servers' models (−0.1·mean by default)."""
import math

from benchmark.api import ServerAttack

from server_attacks._models import copies


def craft(models, f, recipients, factor=1.1):
    return copies((1 - factor) * models.mean(dim=0), f)


def check(n, f, factor):
    return None if math.isfinite(factor) else f"factor must be finite, not {factor}"


server_attack = ServerAttack(
    name="model-empire",
    attack=craft,
    check=check,
    description="(1 - factor) * mean of the correct servers' models (-0.1 * mean by default)",
    reference="Xie et al., Fall of empires, UAI 2019 (applied to models)",
)
