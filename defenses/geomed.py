"""Geometric median by smoothed Weiszfeld iterations (RFA).

z minimises sum_i ||z - g_i||. Each iteration sets z = sum_i w_i g_i / sum_i w_i with
w_i = 1 / max(nu, ||z - g_i||), starting from the mean, until the objective changes by
less than `tolerance` (relative) or `iterations` updates are done. z stays in the span
of the rows, so the iterations run on the n weights with distances from one float64
Gram matrix (O(n^2) per iteration instead of O(n d)); their absolute error is about
1e-8 times the largest row norm. Non-finite rows are infinitely far: they get weight 0.
"""
import torch

from benchmark.api import AtLeast, Defense, gram_matrix, weighted_sum


def weiszfeld_weights(gram, finite, iterations, tolerance, nu):
    """Simplex weights beta of the smoothed-Weiszfeld point sum_i beta_i x_i, given the
    Gram matrix of the x_i (float64); rows that are not finite keep weight 0."""
    gram = gram.masked_fill(~(finite[:, None] & finite[None, :]), 0)
    beta = finite.to(gram.dtype) / finite.sum()
    diagonal = gram.diagonal()
    previous = None
    for _ in range(iterations):
        g_beta = gram @ beta
        distances = (beta @ g_beta - 2 * g_beta + diagonal).clamp_min(0).sqrt()
        objective = float(distances[finite].sum())
        if previous is not None and abs(previous - objective) <= tolerance * objective:
            break
        previous = objective
        weights = torch.where(finite, 1 / distances.clamp_min(nu), 0)
        beta = weights / weights.sum()
    return beta


def aggregate(gradients, f, iterations=100, tolerance=1e-6, nu=1e-6):
    gram, finite = gram_matrix(gradients)
    beta = weiszfeld_weights(gram, finite, iterations, tolerance, nu)
    return weighted_sum(beta, gradients, finite)


def check(n, f, iterations, tolerance, nu):
    if iterations < 0 or tolerance < 0 or nu <= 0:
        return "iterations and tolerance must be >= 0 and nu > 0"
    return None


defense = Defense(
    name="geomed",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    description="Geometric median (smoothed Weiszfeld from the mean, at most `iterations` "
                "steps, stop when the objective changes by < tolerance relative); "
                "non-finite rows get weight 0",
    reference="Pillutla, Kakade, Harchaoui, Robust aggregation for federated learning "
              "(RFA), IEEE TSP 2022",
)
