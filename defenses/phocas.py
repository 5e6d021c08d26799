"""Phocas: per coordinate, the mean of the n - f values closest to the trimmed mean."""
from benchmark.api import AtLeast, Defense, coordinate_mean_around_trimmed_mean


def aggregate(gradients, f):
    return coordinate_mean_around_trimmed_mean(gradients, f, gradients.shape[0] - f)


defense = Defense(
    name="phocas",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    description="Per coordinate, mean of the n-f values closest to the trimmed mean "
                "(ties go to the smaller value; NaN counts as +inf)",
    reference="Xie et al., Phocas: dimensional Byzantine-resilient stochastic gradient "
              "descent, arXiv:1805.09682, 2018",
    version=2,  # 2: the compiled kernels sum the kept values in another order (last bits)
)
