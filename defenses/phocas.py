"""Phocas: per coordinate, the mean of the n - f values closest to the trimmed mean."""
from benchmark.api import Defense, coordinate_mean_around_trimmed_mean


def aggregate(gradients, f):
    return coordinate_mean_around_trimmed_mean(gradients, f, gradients.shape[0] - f)


def check(n, f):
    return None if n >= 2 * f + 1 else f"phocas needs n >= 2f+1 = {2 * f + 1}"


defense = Defense(
    name="phocas",
    aggregate=aggregate,
    check=check,
    requirement="n >= 2f+1",
    description="Per coordinate, mean of the n-f values closest to the trimmed mean "
                "(ties go to the smaller value; NaN counts as +inf)",
    reference="Xie et al., Phocas: dimensional Byzantine-resilient stochastic gradient "
              "descent, arXiv:1805.09682, 2018",
)
