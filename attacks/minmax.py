"""Min-max (Shejwalkar & Houmansadr, NDSS 2021): mean + γ·perturbation with the largest γ
that keeps the largest squared distance to an honest vector within the largest honest
pairwise squared distance."""
from benchmark.api import Attack

from attacks import _agnostic


def craft(honest, f, defense, **options):
    return _agnostic.craft(honest, f, "max", **options)


def check(n, f, **options):
    return _agnostic.check(**options)


attack = Attack(
    name="minmax",
    attack=craft,
    check=check,
    options=dict(_agnostic.OPTIONS),
    description="mean + γ·p (p = -std, -unit mean or -sign mean), γ by binary search so that "
                "the max squared distance to the honest vectors stays within the honest max",
    reference="Shejwalkar & Houmansadr, Manipulating the Byzantine, NDSS 2021",
)
