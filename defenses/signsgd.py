"""signSGD with majority vote: the sign of the sum of the rows' signs, scaled.

Each coordinate of the output is +scale, -scale, or 0 on a tied vote. scale=0 (the
default) picks the median row norm / sqrt(d), so that the output has about the norm
of a typical row. A NaN entry abstains; ±inf votes its sign; non-finite rows count
as infinitely long in the median norm.
"""
import math

import torch

from benchmark.api import AtLeast, Defense, coordinate_median, finite_rows


def aggregate(gradients, f, scale=0.0):
    votes = gradients.sign().nan_to_num(nan=0.0).sum(dim=0)
    if scale == 0:
        norms = torch.linalg.vector_norm(gradients, dim=1)
        norms = norms.masked_fill(~finite_rows(gradients), math.inf)
        scale = coordinate_median(norms[:, None]) / math.sqrt(gradients.shape[1])
    return votes.sign() * scale


def check(n, f, scale):
    if scale < 0:
        return f"scale must be positive, or 0 for the median row norm / sqrt(d), not {scale}"
    return None


defense = Defense(
    name="signsgd",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    description="Majority vote of the coordinate signs, times scale (0: median row norm "
                "/ sqrt(d))",
    reference="Bernstein et al., signSGD with majority vote is communication efficient "
              "and fault tolerant, ICLR 2019",
)
