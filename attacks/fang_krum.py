"""Fang et al.'s full-knowledge attack tailored to Krum, in gradient space.

Every Byzantine worker sends −λ·sign(honest mean): the opposite of the direction the model
would move under no attack. λ starts at the paper's upper bound (below, with the previous
model as the origin and h = n − f honest vectors) and is halved until the defense picks the
Byzantine vector, or λ falls below `threshold`:
    λ₀ = min_i Σ_{l ∈ Γ(i)} ‖g_l − g_i‖ / ((n − 2f − 1)·√d) + max_i ‖g_i‖ / √d,
Γ(i) being the n − f − 2 honest vectors nearest g_i. "Picks" generalises Krum's selection to
any rule: the aggregate lies nearer the Byzantine vector than the honest mean (for Krum this
is exactly selecting a Byzantine copy). The Byzantine vectors are identical (ε = 0).
"""
import math

import torch

from benchmark.api import AtLeast, Attack, pairwise_sq_distances

MAX_HALVINGS = 64


def upper_bound(honest: torch.Tensor, f: int) -> float:
    h, d = honest.shape
    distances = pairwise_sq_distances(honest).sqrt()
    distances.fill_diagonal_(math.inf)
    neighbours = h - 2  # n − f − 2
    spread = (distances.topk(neighbours, dim=1, largest=False).values.sum(dim=1).min()
              if neighbours > 0 else 0.0)
    return float(spread / ((h - f - 1) * math.sqrt(d))
                 + honest.norm(dim=1).max() / math.sqrt(d))


def craft(honest, f, defense, threshold=1e-5):
    mean = honest.mean(dim=0)
    direction = -mean.sign()
    scale = upper_bound(honest, f)
    for _ in range(MAX_HALVINGS):
        if not scale >= threshold:  # also stops on a non-finite bound
            break
        byzantine = scale * direction
        aggregate = defense(torch.cat([honest, byzantine.expand(f, -1)]))
        if (aggregate - byzantine).norm() < (aggregate - mean).norm():
            break
        scale /= 2
    return (scale * direction).expand(f, -1).clone()


def check(n, f, threshold):
    if not threshold > 0:
        return f"threshold must be positive, not {threshold}"
    return None


attack = Attack(
    name="fang-krum",
    attack=craft,
    needs=AtLeast(2, 2),  # the bound divides by n − 2f − 1
    check=check,
    description="-λ·sign(honest mean), λ halved from Fang et al.'s bound until the defense "
                "picks it (tailored to Krum)",
    reference="Fang et al., Local model poisoning attacks to Byzantine-robust federated "
              "learning, USENIX Security 2020",
)
