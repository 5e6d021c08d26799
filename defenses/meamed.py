"""MeaMed: per coordinate, the mean of the n - f values closest to the median."""
from benchmark.api import AtLeast, Defense, coordinate_mean_around_median


def aggregate(gradients, f):
    return coordinate_mean_around_median(gradients, gradients.shape[0] - f)


defense = Defense(
    name="meamed",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    description="Per coordinate, mean of the n-f values closest to the median "
                "(ties go to the smaller value; NaN counts as +inf)",
    reference="Xie et al., Generalized Byzantine-tolerant SGD, arXiv:1802.10116, 2018",
    version=2,  # 2: the compiled kernels sum the kept values in another order (last bits)
)
