"""SignGuard (Xu, Huang, Wang, Lin, Cui, "Byzantine-robust federated learning through
collaborative malicious gradient filtering", ICDCS 2022), plain variant (no similarity
feature).

1. Norm filter: with M the median of the rows' norms (mean of the two middle norms for
   an even count), keep the rows with L·M <= ||g_i|| <= R·M.
2. Sign clustering: on ceil(fraction·d) coordinates drawn at random (all of them when
   fraction >= 1, with no draw), each row's sign statistics are the fractions of its
   positive, zero and negative entries; they are clustered by mean shift with a flat
   kernel and keep the largest cluster.
3. The rule returns the mean of the rows kept by both filters, each clipped to norm M.

Mean shift (the clustering the paper uses), as implemented here: the bandwidth h is the
mean over the points of the distance to their k-th nearest point (itself counted,
k = max(1, floor(quantile · m)) for m points; quantile = 0.5 by default: with a smaller
one, f identical Byzantine rows make h shrink to split the honest rows, e.g. 24 of 51
at quantile 0.3); every point starts a mode, and each mode
moves to the mean of the points within h of it until no mode moves by more than
h/1000 (at most 300 iterations); points whose modes are within h of each other
(transitively) form a cluster. Distances are compared with h up to a 1e-9 relative
slack so that float rounding never decides a membership. Equal-sized largest clusters:
the one whose mean statistics lie nearest the coordinate-wise median statistics, then
the one holding the lowest row index. Should the two filters keep no common row, the
norm filter alone decides.

Non-finite rows count as +inf in the median norm and are never kept.
"""
import math

import torch

from benchmark.api import Aggregated, AtLeast, Defense, finite_rows, weighted_sum

SLACK = 1e-9


def median(values):
    ordered, n = values.sort().values, values.shape[0]
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def within(a, b, h):
    """Bool[len(a), len(b)]: the points of b within h of the points of a."""
    sq = (a[:, None, :] - b[None, :, :]).square().sum(dim=2)
    return sq <= h * h * (1 + SLACK) + 1e-300


def mean_shift(points, quantile, iterations=300):
    """Cluster labels (lowest member index) of `points` [m, k] (float64)."""
    m = points.shape[0]
    k = max(1, int(quantile * m))
    sq = (points[:, None, :] - points[None, :, :]).square().sum(dim=2)
    h = sq.sort(dim=1).values[:, k - 1].sqrt().mean()
    modes = points
    for _ in range(iterations):
        window = within(modes, points, h).to(points.dtype)
        moved = (window @ points) / window.sum(dim=1, keepdim=True)
        shift = (moved - modes).square().sum(dim=1).max()
        modes = moved
        if bool(shift <= (h / 1000) ** 2):
            break
    linked = within(modes, modes, h).to(points.dtype)
    while True:  # transitive closure by repeated squaring: log2(m) products at most
        wider = ((linked @ linked) > 0).to(points.dtype)
        if torch.equal(wider, linked):
            break
        linked = wider
    return linked.argmax(dim=1)  # the first (lowest) index of each point's component


def largest_cluster(features, quantile):
    """Bool[m]: the members of the largest mean-shift cluster of `features`."""
    labels = mean_shift(features, quantile)
    m = features.shape[0]
    sizes = torch.bincount(labels, minlength=m)
    candidates = (sizes == sizes.max()).nonzero().flatten()
    if len(candidates) > 1:
        center = median_rows(features)
        member = labels[None, :] == candidates[:, None]
        means = (member.to(features.dtype) @ features) / sizes[candidates, None]
        gaps = (means - center).square().sum(dim=1)
        candidates = candidates[torch.argsort(gaps, stable=True)]
    return labels == candidates[0]


def median_rows(features):
    ordered, m = features.sort(dim=0).values, features.shape[0]
    return ordered[m // 2] if m % 2 else (ordered[m // 2 - 1] + ordered[m // 2]) / 2


def sign_statistics(block):
    """[n, 3] float64: fractions of positive, zero and negative entries of each row."""
    b = block.shape[1]
    positive = (block > 0).sum(dim=1)
    negative = (block < 0).sum(dim=1)
    zero = b - positive - negative
    return torch.stack([positive, zero, negative], dim=1).to(torch.float64) / b


def aggregate(gradients, f, L=0.1, R=3.0, fraction=0.1, quantile=0.5, *, generator):
    n, d = gradients.shape
    finite = finite_rows(gradients)
    norms = torch.linalg.vector_norm(gradients, dim=1, dtype=torch.float64)
    norms = norms.masked_fill(~finite, math.inf)
    M = median(norms)
    by_norm = finite & (norms >= L * M) & (norms <= R * M)
    if fraction < 1:
        count = max(1, math.ceil(fraction * d))
        columns = torch.randperm(d, generator=generator, device=generator.device)[:count]
        block = gradients.index_select(1, columns.sort().values.to(gradients.device))
    else:
        block = gradients
    rows = finite.nonzero().flatten()
    by_sign = torch.zeros_like(finite)
    by_sign[rows[largest_cluster(sign_statistics(block[rows]), quantile)]] = True
    kept = by_norm & by_sign
    if not bool(kept.any()):
        kept = by_norm
    selected = kept.nonzero().flatten()
    scale = (M / norms[selected].clamp_min(torch.finfo(norms.dtype).tiny)).clamp_max(1)
    weights = torch.zeros(n, dtype=torch.float64, device=gradients.device)
    weights[selected] = scale / len(selected)
    return Aggregated(weighted_sum(weights, gradients, finite), selected)


def check(n, f, L, R, fraction, quantile):
    if not (0 <= L <= 1 <= R):
        return f"the norm bounds must satisfy 0 <= L <= 1 <= R (got L={L}, R={R})"
    if not (0 < fraction and 0 < quantile <= 1):
        return f"fraction must be > 0 and quantile in (0, 1] (got {fraction}, {quantile})"
    return None


defense = Defense(
    name="signguard",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    randomized=True,
    description="Rows with norm within [L, R] x the median norm and in the largest mean-shift "
                "cluster of sign statistics (on a random coordinate subset); mean of them "
                "clipped to the median norm",
    reference="Xu et al., Byzantine-robust federated learning through collaborative malicious "
              "gradient filtering, ICDCS 2022",
)
