"""Fall of empires (inner-product manipulation): every Byzantine worker sends (1 - factor)·mean."""
import math

from benchmark.api import Attack

from attacks._search import along, check_search


def craft(honest, f, defense, factor=1.1, search=0):
    # mean + factor·(−mean) = (1 − factor)·mean; the line search moves along −mean
    return along(honest, f, defense, -honest.mean(dim=0), factor, search)


def check(n, f, factor, search):
    if not math.isfinite(factor):
        return f"factor must be a finite number, not {factor} (default 1.1 sends -0.1·mean)"
    return check_search(search)


attack = Attack(
    name="empire",
    attack=craft,
    check=check,
    description="(1 - factor) * honest mean; the default factor 1.1 sends -0.1 * mean; "
                "search=16 finds the factor by a line search against the defense",
    reference="Xie et al., Fall of empires, UAI 2019",
)
