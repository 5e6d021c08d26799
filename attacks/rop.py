"""ROP, relocated orthogonal perturbation (Özfatura, Özfatura, Küpçü, Gündüz, "Byzantines
can also learn from history: fall of centered clipping in federated learning", IEEE
TIFS 2024), against centered clipping.

The paper's Byzantine workers place their vector at CC's reference point (the previous
aggregate, which the server broadcasts) and perturb it orthogonally to it, so that
clipping around that reference shortens the perturbation but never turns it. The attack
API here holds no state across steps and sees no previous aggregate, so the reference
is the honest mean r of this step (with worker momentum, what CC's previous aggregate
tracks). With u = r / ||r|| and w the unit component of the honest coordinate-wise
standard deviation direction -σ orthogonal to u:
    p = cos(angle)·u + sin(angle)·w        (angle in degrees; 90: orthogonal to r)
    every Byzantine worker sends r + scale·||r||·p.
If -σ is parallel to u (or zero) p reduces to cos(angle)·u; a zero r is sent as is.
One vector is sent f times, as the other direction-based attacks do.
"""
import math

import torch

from benchmark.api import Attack

from attacks.little import coordinate_std


def craft(honest, f, defense, angle=90.0, scale=1.0):
    reference = honest.mean(dim=0)
    length = torch.linalg.vector_norm(reference.to(torch.float64))
    if not bool(length > 0):
        return reference.expand(f, -1)
    u = reference.to(torch.float64) / length
    base = (-coordinate_std(honest, reference) if len(honest) > 1
            else torch.zeros_like(reference)).to(torch.float64)
    orthogonal = base - (base @ u) * u
    size = torch.linalg.vector_norm(orthogonal)
    w = orthogonal / size if bool(size > 0) else torch.zeros_like(u)
    theta = math.radians(angle)
    direction = math.cos(theta) * u + math.sin(theta) * w
    return (reference.to(torch.float64) + scale * length * direction).to(honest.dtype).expand(f, -1)


def check(n, f, angle=90.0, scale=1.0):
    if not math.isfinite(angle):
        return f"angle must be a finite number of degrees, not {angle}"
    if not (math.isfinite(scale) and scale >= 0):
        return f"scale must be a non-negative number, not {scale}"
    return None


attack = Attack(
    name="rop",
    attack=craft,
    check=check,
    options={"angle": 90.0, "scale": 1.0},
    description="Honest mean r plus scale·||r|| along a unit vector at `angle` degrees from r "
                "(90: orthogonal, in the plane of r and -σ); against centered clipping",
    reference="Özfatura et al., Byzantines can also learn from history: fall of centered "
              "clipping in federated learning, IEEE TIFS 2024",
)
