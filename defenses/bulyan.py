"""Bulyan (El Mhamdi et al. 2018) over Krum.

θ = n - 2f rows are selected by applying Krum repeatedly to the rows not yet
selected (each pick leaves the set); then, per coordinate, the output is the mean
of the β = θ - 2f selected values closest to the selection's coordinate median.
Krum on r remaining rows scores each by its r - f - 2 nearest remaining rows; the
last picks of f = 1 leave r - f - 2 = 0, where one neighbour is used instead (with
f = 0 the picks do not matter: all n rows are selected).

variant="iclr21" is the Bulyan of the ICLR'21 momentum harness, kept so the `paper`
profile stays comparable to its numbers: plain (not squared) distances; scores sum
the distances to the m = n - f - 2 nearest other rows, computed once; each of the
θ = n - 2f - 2 iterations i stores the mean of the m - i best-scored rows (a
Multi-Krum average), then removes the best row, whose distance is subtracted from
the scores of the rows that counted it among their nearest; finally, per
coordinate, the mean of the β = θ - 2f stored values closest to their lower median
(torch.median's convention).
"""
import math

import numpy as np
import torch

from benchmark.api import (Aggregated, AtLeast, Defense, coordinate_mean_around_median,
                           coordinate_median, distances_and_finite, krum_bound,
                           pairwise_sq_distances, smallest_first)


def select(gradients, f, count):
    """Indices of `count` rows picked one at a time by Krum among the remaining rows
    (Int64[count], in pick order). The loop runs on the host, in numpy: its [n, n]
    steps cost microseconds there, tens of them as torch calls."""
    distances, finite = distances_and_finite(gradients)
    picks = repeated_krum(distances.cpu().numpy(), finite.cpu().numpy(), f, count)
    return torch.tensor(picks, dtype=torch.int64, device=gradients.device)


def repeated_krum(distances, finite, f, count):
    """Krum again and again on the remaining rows (module docstring), over float64
    distances (numpy [n, n]); a non-finite row ranks behind every finite one, ties go to
    the lower row. Each row's distances to the others are sorted once; a row's score
    sums its k smallest entries still in play, left to right in ascending order (the
    reference's sum(sorted(...)[:k]), the same bits)."""
    n = len(distances)
    others = distances.copy()
    np.fill_diagonal(others, np.inf)
    order = np.argsort(others, axis=1, kind="stable")
    values = np.take_along_axis(others, order, axis=1)
    position = np.empty_like(order)  # position[i, j]: where row i's sort put column j
    np.put_along_axis(position, order, np.broadcast_to(np.arange(n), (n, n)), axis=1)
    rows, columns = np.arange(n), np.arange(n)[None, :]
    live_values = values.copy()  # removed rows (and the row itself) count 0
    live_values[rows, position[rows, rows]] = 0.0
    # in_play[i, p]: how many of row i's first p + 1 entries are still in play, plus
    # (n + 1) i: all rows in one ascending array, which one searchsorted reads
    offsets = (n + 1) * rows
    in_play = np.repeat(columns + 1, n, axis=0) + offsets[:, None]
    in_play -= columns >= position[rows, rows][:, None]
    penalty = np.where(finite, 0.0, np.inf)  # and +inf once picked
    sums = np.empty((n, n + 1))
    sums[:, n] = np.inf  # a row short of k entries in play scores +inf
    # torch's cumsum: the same sums, one after the other, 4 times faster than numpy's here
    live, prefix_sums = torch.from_numpy(live_values), torch.from_numpy(sums)[:, :n]
    remaining = np.ones(n, dtype=bool)
    picks = []
    for left in range(n, n - count, -1):
        k = max(left - f - 2, 1)
        # where each row's k-th entry in play sits (n: nowhere)
        kth = np.searchsorted(in_play.ravel(), offsets + k) - n * rows
        torch.cumsum(live, dim=1, out=prefix_sums)
        keys = sums[rows, kth] + penalty
        pick = int(np.argmin(keys))  # the first of the smallest: the first remaining one...
        if not remaining[pick]:  # ...unless every remaining row scores +inf (or NaN)
            candidates = np.flatnonzero(remaining)
            pick = int(candidates[np.argmin(keys[candidates])])
        picks.append(pick)
        remaining[pick] = False
        penalty[pick] = np.inf
        live_values[rows, position[:, pick]] = 0.0
        in_play -= columns >= position[:, pick][:, None]
    return picks


def iclr21(gradients, f):
    """The ICLR'21 harness's Bulyan over Multi-Krum (module docstring)."""
    n = gradients.shape[0]
    distances = pairwise_sq_distances(gradients).sqrt_()
    distances.fill_diagonal_(math.inf)
    m = n - f - 2
    nearest = distances.topk(m, dim=1, largest=False)
    counted = torch.zeros_like(distances, dtype=torch.bool).scatter_(1, nearest.indices, True)
    scores = nearest.values.sum(dim=1)
    theta = n - 2 * f - 2
    stored, pruned = [], []
    for i in range(theta):
        order = smallest_first(scores)
        stored.append(gradients.index_select(0, order[:m - i]).mean(dim=0))
        best = order[0]
        pruned.append(best)
        scores = scores - torch.where(counted[:, best], distances[:, best], 0)
        scores[best] = math.inf
    stored = torch.stack(stored)
    return Aggregated(mean_around_lower_median(stored, theta - 2 * f), torch.stack(pruned))


def mean_around_lower_median(stored, beta):
    """Per coordinate, the mean of the β values closest to the lower median, as torch's
    median, topk and mean give it. For one value around an odd count's median (the paper
    profile: n = 51, f = 12 gives θ = 25, β = 1) that value is the median itself, which the
    compiled selection kernel finds in a tenth of the time (the same bits: a selection; a
    non-finite value takes torch's path, whose NaN handling differs)."""
    if (beta == 1 and len(stored) % 2 and stored.device.type == "cpu"
            and bool(torch.isfinite(stored).all())):
        return coordinate_median(stored)
    median = stored.median(dim=0).values
    closest = (stored - median).abs_().topk(beta, dim=0, largest=False).indices
    return stored.gather(0, closest).mean(dim=0)


def aggregate(gradients, f, variant="el-mhamdi"):
    if variant == "iclr21":
        return iclr21(gradients, f)
    n = gradients.shape[0]
    theta = n - 2 * f
    selected = select(gradients, f, theta)
    vector = coordinate_mean_around_median(gradients, theta - 2 * f, selected)
    return Aggregated(vector, selected)


def check(n, f, variant):
    if variant not in ("el-mhamdi", "iclr21"):
        return "variant must be 'el-mhamdi' (the paper) or 'iclr21' (the ICLR'21 harness)"
    return None


defense = Defense(
    name="bulyan",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(4, 3),
    upper_bound=krum_bound,
    description="Select n-2f rows by repeated Krum, then per coordinate average the "
                "n-4f selected values closest to their median",
    reference="El Mhamdi, Guerraoui, Rouault, The hidden vulnerability of distributed "
              "learning in Byzantium, ICML 2018",
)
