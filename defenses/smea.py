"""SMEA, smallest maximum eigenvalue averaging: the mean of the (n - f)-subset whose
empirical covariance has the smallest top eigenvalue.

Exact by enumeration of the C(n, f) subsets, in vectorised batches: a subset's top
covariance eigenvalue is that of its centred Gram matrix (k x k, float64) divided by k.
No polynomial method is known, so `check` refuses (n, f) with more than `max_subsets`
subsets; CAF is the tractable filter built on the same criterion. A subset holding a
non-finite row has an infinite eigenvalue.
"""
import itertools
import math

import numpy as np
import torch

from benchmark.api import Aggregated, AtLeast, Defense, gram_matrix, mean_of_rows

BATCH = 4096


def subsets_kept(n, f, device):
    """Tensor[C(n, f), n - f]: every (n - f)-subset of range(n), in lexicographic order
    of the removed rows."""
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), f)),
                       dtype=np.int64, count=math.comb(n, f) * f)
    removed = torch.zeros(math.comb(n, f), n, dtype=torch.bool)
    removed[torch.arange(len(removed)).repeat_interleave(f), torch.from_numpy(flat)] = True
    return torch.nonzero(~removed)[:, 1].reshape(len(removed), n - f).to(device)


def aggregate(gradients, f, max_subsets=5000):
    n = gradients.shape[0]
    gram, finite = gram_matrix(gradients)
    gram = gram.masked_fill(~(finite[:, None] & finite[None, :]), 0)
    k = n - f
    kept = subsets_kept(n, f, gradients.device)
    centering = torch.eye(k, dtype=gram.dtype, device=gram.device) - 1 / k
    top = []
    for batch in kept.split(BATCH):
        sub = gram[batch[:, :, None], batch[:, None, :]]
        top.append(torch.linalg.eigvalsh(centering @ sub @ centering)[:, -1])
    top = torch.cat(top).masked_fill(~finite[kept].all(dim=1), math.inf)
    selected = kept[int(torch.argmin(top))]
    return Aggregated(mean_of_rows(gradients, selected), selected)


def check(n, f, max_subsets):
    if math.comb(n, f) > max_subsets:
        return (f"smea enumerates C(n, f) = C({n}, {f}) = {math.comb(n, f):,} subsets, more "
                f"than max_subsets={max_subsets:,}; lower f, raise smea:max_subsets=..., "
                "or use caf")
    return None


defense = Defense(
    name="smea",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    requirement="n >= 2f+1 and C(n, f) <= max_subsets",
    description="Mean of the n-f rows whose covariance has the smallest top eigenvalue "
                "(exact enumeration, bounded by max_subsets)",
    reference="Allouah et al., Fixing by mixing: a recipe for optimal Byzantine ML under "
              "heterogeneity, AISTATS 2023",
)
