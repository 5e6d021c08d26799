"""MoNNA: the mean of the n - f rows nearest to a trusted pivot.

In the peer-to-peer paper each honest node uses its own momentum as the pivot. A
server has no row it can trust, so the pivot is the server's previous aggregate
(pivot='previous', stateful; the first step, without history, uses the coordinate-wise
median) or the current coordinate-wise median (pivot='median').
"""
import math

import torch

from benchmark.api import (Aggregated, AtLeast, Defense, coordinate_median, finite_rows, mean_of_rows,
                           smallest_first)


def aggregate(gradients, f, pivot="previous", *, state):
    n = gradients.shape[0]
    center = state.get("previous") if pivot == "previous" else None
    if center is None:
        center = coordinate_median(gradients)
    distances = torch.linalg.vector_norm(gradients - center, dim=1)
    distances = distances.masked_fill(~finite_rows(gradients), math.nan)  # rank them last
    selected = smallest_first(distances)[:n - f]
    result = mean_of_rows(gradients, selected)
    state["previous"] = result.clone()
    return Aggregated(result, selected)


def check(n, f, pivot):
    if pivot not in ("previous", "median"):
        return f"pivot must be 'previous' (the last aggregate) or 'median', not {pivot!r}"
    return None


defense = Defense(
    name="monna",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    stateful=True,
    description="Mean of the n-f rows nearest to the previous aggregate (first step: to the "
                "coordinate-wise median; pivot=median: always the median)",
    reference="Farhadkhani et al., Robust collaborative learning with linear gradient "
              "overhead, ICML 2023",
)
