"""Comparative gradient elimination: the mean of the n - f smallest-norm rows."""
import math

import torch

from benchmark.api import Aggregated, AtLeast, Defense, finite_rows, mean_of_rows, smallest_first


def aggregate(gradients, f):
    n = gradients.shape[0]
    norms = torch.linalg.vector_norm(gradients, dim=1)
    norms = norms.masked_fill(~finite_rows(gradients), math.nan)  # ranked behind every finite row
    selected = smallest_first(norms)[:n - f]
    return Aggregated(mean_of_rows(gradients, selected), selected)


defense = Defense(
    name="cge",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    description="Mean of the n-f rows of smallest norm (non-finite rows rank last)",
    reference="Gupta, Liu, Vaidya, Byzantine fault-tolerant distributed machine learning "
              "with norm-based comparative gradient elimination, DSN-W 2021",
)
