"""Adaptive robust clipping (pre-aggregator): the k = floor(2 (f/n) (n - f)) rows of
largest norm are clipped to the norm of the (k+1)-th largest. Compose: `arc+trmean`.

Equivalently every row is scaled by min(1, tau / ||g_i||), tau being the (k+1)-th
largest norm, so ties at tau need no tie-break. Non-finite rows are left as they
are (their norm is infinite, so they count among the k largest): the next rule
treats them as infinitely far.
"""
import math

import torch

from benchmark.api import AtLeast, Defense, finite_rows


def aggregate(gradients, f):
    n = gradients.shape[0]
    k = int(2 * f * (n - f) / n)
    finite = finite_rows(gradients)
    norms = torch.linalg.vector_norm(gradients, dim=1).masked_fill(~finite, math.inf)
    threshold = norms.sort(descending=True).values[k]
    scale = (threshold / norms.clamp_min(torch.finfo(norms.dtype).tiny)).clamp_max(1)
    return torch.where(finite[:, None], gradients * scale[:, None], gradients)


defense = Defense(
    name="arc",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    preaggregator=True,
    keeps_rows=True,
    description="Pre-aggregator: clip the floor(2(f/n)(n-f)) largest-norm rows to the next "
                "largest norm; compose as arc+RULE",
    reference="Allouah et al., Boosting robustness by clipping gradients in distributed "
              "learning, AISTATS 2025",
)
