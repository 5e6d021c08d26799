"""Coordinate-wise trimmed mean."""
from benchmark.api import Defense, coordinate_trimmed_mean


def aggregate(gradients, f):
    return coordinate_trimmed_mean(gradients, f)


def check(n, f):
    return None if n >= 2 * f + 1 else f"trmean needs n >= 2f+1 = {2 * f + 1}"


defense = Defense(
    name="trmean",
    aggregate=aggregate,
    check=check,
    requirement="n >= 2f+1",
    description="Per coordinate, drop the f largest and f smallest values and average the "
                "n-2f left (NaN counts as +inf)",
    reference="Yin et al., Byzantine-robust distributed learning: towards optimal "
              "statistical rates, ICML 2018",
)
