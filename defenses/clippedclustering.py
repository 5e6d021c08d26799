"""Clipped clustering (Li, Xu, Huang, Lu, "An experimental study of Byzantine-robust
aggregation schemes in federated learning", IEEE Transactions on Big Data, 2023).

Every row is clipped to norm tau, the median of all the norms seen so far in the run
(the rows' norms of every step, this one included: a per-run state; `history=false`
uses this step's norms only), then the rows are split into two clusters by
agglomerative clustering with average linkage on the cosine distance 1 - cos(g_i, g_j)
(clipping leaves directions alone). The rule returns the mean of the clipped rows of the
larger cluster. Equal sizes: the cluster of smaller sum of pairwise distances, then the
one holding the lowest row index; a zero row is at distance 1 from every other. Merges join the two clusters of smallest average
distance, ties to the lowest cluster indices (a cluster is indexed by its lowest row).
Non-finite rows take no part: their norms stay out of the history and they are never
kept.
"""
import math

import torch

from benchmark.api import Aggregated, AtLeast, Defense, finite_rows, gram_matrix, weighted_sum


def median(values):
    ordered, n = values.sort().values, values.shape[0]
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def cosine_distances(gram):
    squares = gram.diagonal().clamp_min(0)
    outer = squares[:, None] * squares[None, :]
    # sqrt(a² · a²) is a exactly: identical rows are at distance exactly 0
    return 1 - torch.where(outer > 0, gram / outer.sqrt(), 0.0).clamp(-1, 1)


def two_clusters(distances):
    """Labels (the lowest row index of each cluster) of the two clusters left by average
    linkage agglomeration; one loop iteration per merge, each a few tensor operations."""
    m = distances.shape[0]
    labels = torch.arange(m, device=distances.device)
    if m <= 2:
        return labels
    linkage = distances.clone()
    linkage.fill_diagonal_(math.inf)
    sizes = torch.ones(m, dtype=distances.dtype, device=distances.device)
    for _ in range(m - 2):
        flat = int(torch.argmin(linkage))
        a, b = sorted(divmod(flat, m))
        merged = (sizes[a] * linkage[a] + sizes[b] * linkage[b]) / (sizes[a] + sizes[b])
        linkage[a], linkage[:, a] = merged, merged
        linkage[b], linkage[:, b] = math.inf, math.inf
        linkage[a, a] = math.inf
        sizes[a] += sizes[b]
        labels[labels == b] = a
    return labels


def aggregate(gradients, f, history=True, *, state):
    finite = finite_rows(gradients)
    rows = finite.nonzero().flatten()
    gram, _ = gram_matrix(gradients)
    gram = gram[rows][:, rows]  # a non-finite row spoils only its own row and column
    norms = gram.diagonal().clamp_min(0).sqrt()
    past = state.get("norms") if history else None
    seen = norms if past is None else torch.cat([past.to(norms.device), norms])
    if history:
        state["norms"] = seen.clone()
    tau = median(seen)
    labels = two_clusters(cosine_distances(gram))
    first = labels[0]
    in_first = labels == first
    count = int(in_first.sum())
    keep = in_first
    if 2 * count < len(rows):
        keep = ~in_first
    elif 2 * count == len(rows):  # equal sizes: the tighter cluster
        spread = cosine_distances(gram)
        first_sum = spread[in_first][:, in_first].sum()
        second_sum = spread[~in_first][:, ~in_first].sum()
        keep = in_first if bool(first_sum <= second_sum) else ~in_first
    selected = rows[keep]
    scale = (tau / norms[keep].clamp_min(torch.finfo(norms.dtype).tiny)).clamp_max(1)
    weights = torch.zeros(len(gradients), dtype=torch.float64, device=gradients.device)
    weights[selected] = scale / len(selected)
    return Aggregated(weighted_sum(weights, gradients, finite), selected)


defense = Defense(
    name="clippedclustering",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    stateful=True,
    description="Clip rows to the median of every norm seen so far, split them in two by "
                "average-linkage clustering on cosine distance, mean of the larger cluster",
    reference="Li, Xu, Huang, Lu, An experimental study of Byzantine-robust aggregation "
              "schemes in federated learning, IEEE Transactions on Big Data, 2023",
)
