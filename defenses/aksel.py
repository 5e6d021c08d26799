"""Aksel: the mean of the rows closest to the coordinate-wise median.

Rows are ranked by squared distance to the coordinate-wise median; the mean of the
ceil(n/2) closest is returned (mode 'mid'), or of the n - f closest (mode 'n-f').
"""
import math

import torch

from benchmark.api import (Aggregated, AtLeast, Defense, coordinate_median, finite_rows, mean_of_rows,
                           smallest_first)

COUNTS = {"mid": lambda n, f: (n + 1) // 2, "n-f": lambda n, f: n - f}


def aggregate(gradients, f, mode="mid"):
    n = gradients.shape[0]
    median = coordinate_median(gradients)
    distances = torch.linalg.vector_norm(gradients - median, dim=1)
    distances = distances.masked_fill(~finite_rows(gradients), math.nan)  # rank them last
    selected = smallest_first(distances)[:COUNTS[mode](n, f)]
    return Aggregated(mean_of_rows(gradients, selected), selected)


def check(n, f, mode):
    if mode not in COUNTS:
        return f"mode must be 'mid' (ceil(n/2) closest rows) or 'n-f', not {mode!r}"
    return None


defense = Defense(
    name="aksel",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    description="Mean of the ceil(n/2) rows closest to the coordinate-wise median "
                "(mode=n-f: the n-f closest)",
    reference="Boussetta et al., AKSEL: fast Byzantine SGD, OPODIS 2020",
)
