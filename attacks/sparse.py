"""Sparse: the perturbation is confined to the k coordinates where the honest mean is
largest in magnitude (k = ceil(fraction·d)), the coordinates magnitude pruning would keep
as the most important; every other coordinate is the honest mean's.

On those coordinates J, with m the honest mean and σ the honest coordinate-wise
(unbiased) standard deviation:
    mode=std:  m_J - factor·σ_J·sign(m_J)   ("a little is enough" against the sign of
               each large coordinate, concentrated where it matters most)
    mode=flip: -factor·m_J                   (the large coordinates reversed)
    mode=zero: 0                             (the large coordinates pruned)
Ties in |m| go to the lower coordinate index.

Source: the sparse component of the hybrid attack of Özfatura, Özfatura, Küpçü, Gündüz,
"Aggressive or imperceptible, or both: network pruning assisted hybrid Byzantines in
federated learning" (arXiv:2404.06230, 2024), which perturbs only the locations a
pruning mask marks as most sensitive. The attack API sees the submitted vectors, not the
model's weights, so the mask here is the magnitude-pruning mask of the honest mean
(its k largest |m_j|), and the paper's second, slowly accumulating component (which
needs a state across steps) is left out. One vector is sent f times, as the other
direction-based attacks do.
"""
import math

import torch

from benchmark.api import Attack

from attacks._spread import coordinate_std

MODES = ("std", "flip", "zero")


def craft(honest, f, defense, fraction=0.01, factor=1.5, mode="std"):
    mean = honest.mean(dim=0)
    d = mean.shape[0]
    k = min(d, max(1, math.ceil(fraction * d)))
    top = torch.argsort(mean.abs(), descending=True, stable=True)[:k]
    values = mean[top]
    if mode == "std":
        deviation = coordinate_std(honest.index_select(1, top), values)
        values = values - factor * deviation * values.sign()
    elif mode == "flip":
        values = -factor * values
    else:
        values = torch.zeros_like(values)
    return mean.index_copy(0, top, values).expand(f, -1)


def check(n, f, fraction, factor, mode):
    if mode not in MODES:
        return f"mode must be one of {', '.join(MODES)}, not {mode!r}"
    if not (0 < fraction <= 1):
        return f"fraction must be in (0, 1], not {fraction}"
    if not (math.isfinite(factor) and factor >= 0):
        return f"factor must be a non-negative number, not {factor}"
    return None


attack = Attack(
    name="sparse",
    attack=craft,
    check=check,
    description="Honest mean with only its ceil(fraction·d) largest-magnitude coordinates "
                "attacked: pushed factor·σ against their sign (mode=std), reversed (flip) or "
                "zeroed (zero)",
    reference="Özfatura et al., Aggressive or imperceptible, or both: network pruning "
              "assisted hybrid Byzantines in federated learning, arXiv:2404.06230, 2024 "
              "(its sparse component, mask from the honest mean's magnitudes)",
)
