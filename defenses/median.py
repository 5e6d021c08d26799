"""Coordinate-wise median."""
import math

from benchmark.api import AtLeast, Defense, coordinate_median


def aggregate(gradients, f):
    return coordinate_median(gradients)


defense = Defense(
    name="median",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    upper_bound=lambda n, f, d: 1 / math.sqrt(n - f),
    description="Coordinate-wise median (mean of the two middle values for even n; "
                "NaN counts as +inf)",
    reference="Yin et al., Byzantine-robust distributed learning: towards optimal "
              "statistical rates, ICML 2018",
)
