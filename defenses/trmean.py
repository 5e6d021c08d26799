"""Coordinate-wise trimmed mean."""
from benchmark.api import AtLeast, Defense, coordinate_trimmed_mean


def aggregate(gradients, f):
    return coordinate_trimmed_mean(gradients, f)


defense = Defense(
    name="trmean",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    description="Per coordinate, drop the f largest and f smallest values and average the "
                "n-2f left (NaN counts as +inf)",
    reference="Yin et al., Byzantine-robust distributed learning: towards optimal "
              "statistical rates, ICML 2018",
    version=2,  # 2: the compiled kernels sum the kept values in another order (last bits)
)
