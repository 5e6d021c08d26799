"""Chain: the adversary of Blades against clipped clustering (Li, Ai, Chen, Wang, Zhang,
"Blades: a unified benchmark suite for Byzantine attacks and defenses in federated
learning", IoTDI 2024; attack on the clipped clustering of Li et al., IEEE TBD 2023).

Clipped clustering splits the rows in two by linkage on the cosine distance and keeps
the larger cluster. The Byzantine vectors form a chain of directions that starts at the
honest vector farthest in angle from the honest mean and walks away from the mean, each
link one step long, the step being the smallest angle between two honest vectors: every
link is as close to the previous one as the closest honest pair, so the chain is
clustered with the honest vectors, and the larger cluster's mean is dragged along it.

With u the unit honest mean, e the honest vector of largest angle θ to u (lowest index on
ties) and w the unit component of e orthogonal to u, Byzantine worker k = 1..f sends
    scale · ν · (cos φ_k · u + sin φ_k · w),   φ_k = min(θ + k · step, π),
ν the median honest norm (clipping to the median norm then leaves it as it is). When e
is parallel to u (w vanishes), or the mean is zero, every worker sends -scale·ν·u
(the zero vector for a zero mean).
"""
import math

import torch

from benchmark.api import Attack


def unit_rows(rows):
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    return torch.where(norms > 0, rows / norms.clamp_min(torch.finfo(rows.dtype).tiny), 0.0)


def smallest_angle(units):
    """The smallest angle between two of the unit rows (0 for fewer than two rows)."""
    if len(units) < 2:
        return 0.0
    cosines = (units @ units.T).clamp(-1, 1)
    cosines.fill_diagonal_(-1.0)
    return math.acos(float(cosines.max()))


def craft(honest, f, defense, scale=1.0):
    rows = honest.to(torch.float64)
    mean = rows.mean(dim=0)
    length = float(torch.linalg.vector_norm(mean))
    size = float(torch.linalg.vector_norm(rows, dim=1).median()) * scale
    if not length > 0:
        return torch.zeros_like(honest[:1]).expand(f, -1).clone()
    u = mean / length
    units = unit_rows(rows)
    cosines = (units @ u).clamp(-1, 1)
    extreme = int(torch.argmin(cosines))
    theta = math.acos(float(cosines[extreme]))
    orthogonal = units[extreme] - cosines[extreme] * u
    width = torch.linalg.vector_norm(orthogonal)
    if not bool(width > 1e-12):
        return (-size * u).to(honest.dtype).expand(f, -1).clone()
    w = orthogonal / width
    step = smallest_angle(units)
    angles = torch.tensor([min(theta + k * step, math.pi) for k in range(1, f + 1)],
                          dtype=torch.float64, device=honest.device)
    chain = torch.cos(angles)[:, None] * u + torch.sin(angles)[:, None] * w
    return (size * chain).to(honest.dtype)


def check(n, f, scale):
    if not (math.isfinite(scale) and scale > 0):
        return f"scale must be a positive number, not {scale}"
    return None


attack = Attack(
    name="chain",
    attack=craft,
    check=check,
    description="A chain of directions from the honest vector farthest from the honest mean, "
                "each a smallest-honest-angle further away, at the median honest norm: the "
                "Blades adversary of clipped clustering",
    reference="Li et al., Blades: a unified benchmark suite for Byzantine attacks and "
              "defenses in federated learning, IoTDI 2024",
)
