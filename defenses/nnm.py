"""Nearest-neighbour mixing (pre-aggregator): each row becomes the mean of its n - f
nearest rows, itself included. Compose it with a rule: `nnm+krum`.

A non-finite row is infinitely far from the others, so no finite row mixes it in
(with at most f of them); its own output row is NaN, which the next rule treats as
infinitely far.
"""
import math

import torch

from benchmark.api import AtLeast, Defense, distances_and_finite, weighted_sum


def aggregate(gradients, f):
    n = gradients.shape[0]
    distances, finite = distances_and_finite(gradients)
    distances.diagonal().fill_(-1.0)  # each row counts itself first, even among duplicates
    nearest = distances.argsort(dim=1, stable=True)[:, :n - f]  # ties: lower row index
    mixing = torch.zeros(n, n, dtype=gradients.dtype, device=gradients.device)
    mixing.scatter_(1, nearest, 1 / (n - f))
    if bool(finite.all()):
        return mixing @ gradients
    touches_non_finite = (mixing[:, ~finite] > 0).any(dim=1)
    mixed = weighted_sum(mixing.masked_fill_(~finite[None, :], 0), gradients, finite)
    mixed[touches_non_finite] = math.nan
    return mixed


defense = Defense(
    name="nnm",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    preaggregator=True,
    keeps_rows=True,
    description="Pre-aggregator: replace each row by the mean of its n-f nearest rows "
                "(itself included); compose as nnm+RULE",
    reference="Allouah et al., Fixing by mixing: a recipe for optimal Byzantine ML under "
              "heterogeneity, AISTATS 2023",
)
