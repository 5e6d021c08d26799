"""Divide-and-Conquer, DnC (Shejwalkar & Houmansadr, NDSS 2021, Algorithm 2).

Each of `niters` iterations draws b of the d coordinates at random (all of them when
b >= d, with no draw), centres the rows on their mean over those coordinates, and
scores each row by the squared projection of its centred part on the top right
singular vector; the floor(c·f) highest-scored rows are dropped. A row kept by every
iteration is kept, and the rule returns the mean of the kept rows (should no row be kept
by every iteration, which the paper leaves open, the rows kept by the most iterations).

The top right singular vector v of the centred [n, b] matrix C is never formed: with u
the top eigenvector of the n x n Gram matrix C Cᵀ (float64) and λ its eigenvalue,
(C v)_i = sqrt(λ) u_i, so score_i = λ u_i². Ties on a score drop the higher row index.
A non-finite row gets an infinite score and is never kept: the centring and the
decomposition use the finite rows only (with more than floor(c·f) non-finite rows the
finite rows are still the only candidates).
"""
import math

import torch

from benchmark.api import Aggregated, AtLeast, Defense, finite_rows, mean_of_rows


def scores(block, finite):
    """λ u_i² for the finite rows of `block` (float64), +inf for the others."""
    x = block[finite].to(torch.float64)
    centred = x - x.mean(dim=0)
    values, vectors = torch.linalg.eigh(centred @ centred.T)
    result = torch.full((block.shape[0],), math.inf, dtype=torch.float64, device=block.device)
    result[finite] = values[-1].clamp_min(0) * vectors[:, -1].square()
    return result


def aggregate(gradients, f, c=1.0, niters=5, b=10000, *, generator):
    n, d = gradients.shape
    finite = finite_rows(gradients)
    dropped = int(math.floor(c * f))
    votes = torch.zeros(n, dtype=torch.int64, device=gradients.device)
    for _ in range(niters if b < d else 1):  # without a draw every iteration is the same
        if b < d:
            columns = torch.randperm(d, generator=generator, device=generator.device)[:b]
            block = gradients.index_select(1, columns.sort().values.to(gradients.device))
        else:
            block = gradients
        order = torch.argsort(scores(block, finite), stable=True)  # ties: lower index first
        votes[order[:n - dropped]] += 1
    votes.masked_fill_(~finite, -1)
    selected = (votes == votes.max()).nonzero().flatten()
    return Aggregated(mean_of_rows(gradients, selected), selected)


def check(n, f, c, niters, b):
    if not (math.isfinite(c) and c >= 0) or niters < 1 or b < 1:
        return f"c must be >= 0, niters >= 1 and b >= 1 (got c={c}, niters={niters}, b={b})"
    return None if n > math.floor(c * f) else "dnc needs n > floor(c·f)"


defense = Defense(
    name="dnc",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    randomized=True,
    description="Divide-and-Conquer: niters times, on b random coordinates, drop the floor(c·f) "
                "rows with the largest squared projection on the top singular vector of the "
                "centred rows; mean of the rows kept every time",
    reference="Shejwalkar & Houmansadr, Manipulating the Byzantine: optimizing model poisoning "
              "attacks and defenses for federated learning, NDSS 2021",
)
