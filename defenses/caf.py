"""CAF, the covariance-bound agnostic filter.

Every row starts with weight c_i = 1 (0 for a non-finite row). While the total
weight exceeds n - 2f: take the c-weighted mean mu and covariance, its top
eigenvalue lambda and eigenvector v, remember mu if lambda is the smallest seen,
then down-weight c_i <- c_i (1 - tau_i / max_j tau_j) with tau_i = <g_i - mu, v>^2
(the max over rows of positive weight; that row drops to 0). The output is the
remembered mean (the plain mean when the loop never runs, e.g. f = 0).
All of it runs on the n x n Gram matrix of the rows (float64): the covariance's
top eigenpair comes from the weighted, centred Gram matrix.
"""
import math

import torch

from benchmark.api import AtLeast, Defense, gram_matrix, weighted_sum


def filter_weights(gram, weights, floor):
    """The weights (summing to 1) of the remembered mean; `floor` = n - 2f."""
    best_weights, best_eigenvalue = weights / weights.sum(), math.inf
    while weights.sum() > floor:
        share = weights / weights.sum()
        g_share = gram @ share
        centred = gram - g_share[:, None] - g_share[None, :] + share @ g_share
        root = share.sqrt()
        eigenvalues, eigenvectors = torch.linalg.eigh(root[:, None] * centred * root[None, :])
        eigenvalue = float(eigenvalues[-1])
        if eigenvalue < best_eigenvalue:
            best_weights, best_eigenvalue = share, eigenvalue
        if eigenvalue <= 0:
            break  # every weighted row sits at the mean: nothing left to filter
        # <g_i - mu, v> for v = sum_j root_j u_j (g_j - mu) / sqrt(lambda)
        tau = (centred @ (root * eigenvectors[:, -1])) ** 2 / eigenvalue
        tau = tau.masked_fill(weights <= 0, 0)
        weights = weights * (1 - tau / tau.max())
    return best_weights


def aggregate(gradients, f):
    n = gradients.shape[0]
    gram, finite = gram_matrix(gradients)
    gram = gram.masked_fill(~(finite[:, None] & finite[None, :]), 0)
    share = filter_weights(gram, finite.to(torch.float64), n - 2 * f)
    return weighted_sum(share, gradients, finite)


defense = Defense(
    name="caf",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    description="Covariance-bound agnostic filter: iteratively down-weight rows along the "
                "top eigenvector of the weighted covariance, return the weighted mean "
                "of smallest top eigenvalue",
    reference="Allouah, Guerraoui, Stephan, Towards trustworthy federated learning with "
              "untrusted participants, ICML 2025",
)
