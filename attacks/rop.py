"""ROP, relocated orthogonal perturbation (Özfatura, Özfatura, Küpçü, Gündüz, "Byzantines
can also learn from history: fall of centered clipping in federated learning", IEEE
TIFS 2024), against centered clipping (CC).

CC clips every vector around a reference point, the previous aggregate. ROP relocates
the Byzantine vector to that reference and perturbs it orthogonally to it: clipping
around the reference shortens the perturbation but never turns it, and step after step
the aggregate drifts away from the honest direction.

The attack keeps the aggregate it expects the server to compute (a per-run state): after
crafting its vector it runs the defense (the harness's probe, which changes nothing in
the run) on the honest rows and its own, and uses the result as the next step's
reference r (`reference=previous`, the default). At the first step, or with
`reference=mean`, r is this step's honest mean. With u = r / ||r|| and w the unit
component orthogonal to u of -(honest mean), or, when that vanishes (always when r is
the honest mean), of -σ (the honest coordinate-wise standard deviation):
    p = cos(angle)·u + sin(angle)·w        (angle in degrees; 90: orthogonal to r)
    every Byzantine worker sends r + scale·||r||·p.
If both candidates for w vanish p reduces to cos(angle)·u; a zero r is sent as is.
One vector is sent f times, as the other direction-based attacks do.
"""
import math

import torch

from benchmark.api import Attack

from attacks._spread import coordinate_std

REFERENCES = ("previous", "mean")


def unit_orthogonal(vector, u):
    """The unit component of `vector` orthogonal to the unit `u`, or None if it vanishes."""
    orthogonal = vector - (vector @ u) * u
    size = torch.linalg.vector_norm(orthogonal)
    return orthogonal / size if bool(size > 1e-12 * torch.linalg.vector_norm(vector)) else None


def vector(honest, mean, reference, angle, scale):
    length = torch.linalg.vector_norm(reference)
    if not bool(length > 0):
        return reference
    u = reference / length
    w = unit_orthogonal(-mean, u)
    if w is None and len(honest) > 1:
        w = unit_orthogonal(-coordinate_std(honest, mean).to(torch.float64), u)
    theta = math.radians(angle)
    direction = math.cos(theta) * u + (math.sin(theta) * w if w is not None else 0)
    return reference + scale * length * direction


def craft(honest, f, defense, angle=90.0, scale=1.0, reference="previous", *, state):
    mean = honest.mean(dim=0)
    previous = state.get("reference") if reference == "previous" else None
    center = (previous.to(device=honest.device, dtype=torch.float64) if previous is not None
              else mean.to(torch.float64))
    sent = vector(honest, mean.to(torch.float64), center, angle, scale).to(honest.dtype)
    byzantine = sent.expand(f, -1)
    if reference == "previous":
        expected = defense(torch.cat([honest, byzantine]))
        if bool(torch.isfinite(expected).all()):
            state["reference"] = expected.detach().clone()
        else:
            state.pop("reference", None)  # start again from the honest mean
    return byzantine


def check(n, f, angle, scale, reference):
    if reference not in REFERENCES:
        return f"reference must be one of {', '.join(REFERENCES)}, not {reference!r}"
    if not math.isfinite(angle):
        return f"angle must be a finite number of degrees, not {angle}"
    if not (math.isfinite(scale) and scale >= 0):
        return f"scale must be a non-negative number, not {scale}"
    return None


attack = Attack(
    name="rop",
    attack=craft,
    check=check,
    stateful=True,
    description="Reference r (the aggregate the attack expected last step; the honest mean "
                "at first or with reference=mean) plus scale·||r|| along a unit vector at "
                "`angle` degrees from r (90: orthogonal), against centered clipping",
    reference="Özfatura et al., Byzantines can also learn from history: fall of centered "
              "clipping in federated learning, IEEE TIFS 2024",
)
