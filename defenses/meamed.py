"""MeaMed: per coordinate, the mean of the n - f values closest to the median."""
from benchmark.api import Defense, coordinate_mean_around_median


def aggregate(gradients, f):
    return coordinate_mean_around_median(gradients, gradients.shape[0] - f)


def check(n, f):
    return None if n >= 2 * f + 1 else f"meamed needs n >= 2f+1 = {2 * f + 1}"


defense = Defense(
    name="meamed",
    aggregate=aggregate,
    check=check,
    requirement="n >= 2f+1",
    description="Per coordinate, mean of the n-f values closest to the median "
                "(ties go to the smaller value; NaN counts as +inf)",
    reference="Xie et al., Generalized Byzantine-tolerant SGD, arXiv:1802.10116, 2018",
)
