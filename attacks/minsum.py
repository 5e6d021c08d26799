"""Min-sum (Shejwalkar & Houmansadr, NDSS 2021): mean + γ·perturbation with the largest γ
that keeps the sum of squared distances to the honest vectors within the largest such
sum of an honest vector."""
from benchmark.api import Attack

from attacks import _agnostic


def craft(honest, f, defense, **options):
    return _agnostic.craft(honest, f, "sum", **options)


def check(n, f, **options):
    return _agnostic.check(**options)


attack = Attack(
    name="minsum",
    attack=craft,
    check=check,
    options=dict(_agnostic.OPTIONS),
    description="mean + γ·p (p = -std, -unit mean or -sign mean), γ by binary search so that "
                "the summed squared distance to the honest vectors stays within the honest sum",
    reference="Shejwalkar & Houmansadr, Manipulating the Byzantine, NDSS 2021",
)
