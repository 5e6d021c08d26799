"""The hidden vulnerability: vectors close to the honest mean in l2 (so that distance-based
rules such as Krum select them) but pushed far along one coordinate, or along all of them."""
from benchmark.api import Attack

from attacks._search import along, check_search


def _target(coordinate):
    """None for 'all', else the integer index; raises ValueError on anything else."""
    return None if coordinate == "all" else int(coordinate)


def craft(honest, f, defense, coordinate="-1", factor=1.0, search=16):
    target = _target(coordinate)
    if target is None:
        direction = honest.new_ones(honest.shape[1])
    else:
        direction = honest.new_zeros(honest.shape[1])
        direction[target] = 1
    return along(honest, f, defense, direction, factor, search)


def check(n, f, coordinate, factor, search):
    try:
        _target(coordinate)
    except ValueError:
        return (f"coordinate must be an integer index (negative counts from the end) or 'all', "
                f"not {coordinate!r}")
    if factor < 0:
        return f"factor must be non-negative, not {factor}"
    return check_search(search)


attack = Attack(
    name="bulyan",
    attack=craft,
    check=check,
    description="mean + x on one coordinate (coordinate=all: on every coordinate), x found by "
                "a 16-evaluation line search against the defense (search=0: x = factor)",
    reference="El Mhamdi et al., The hidden vulnerability of distributed learning in Byzantium, "
              "ICML 2018",
)
