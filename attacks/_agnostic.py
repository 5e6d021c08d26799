"""Shared code of the AGR-agnostic min-max and min-sum attacks (Shejwalkar & Houmansadr,
"Manipulating the Byzantine: optimizing model poisoning attacks and defenses for federated
learning", NDSS 2021).

Every Byzantine worker sends m = mean + γ·p, p a perturbation direction: p = −mean/‖mean‖
("unit"), −σ ("std", the coordinate-wise std) or −sign(mean) ("sign"). γ is the largest value,
found by binary search, such that m's squared distances to the honest vectors stay within the
honest ones': the max of them within the largest honest pairwise one (min-max), or their sum
within the largest sum of an honest vector's squared distances to the others (min-sum).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from benchmark.api import pairwise_sq_distances

PERTURBATIONS = ("unit", "std", "sign")
OPTIONS = {"perturbation": "std", "gamma_init": 10.0, "tolerance": 1e-5}


def perturbation(honest: torch.Tensor, kind: str) -> torch.Tensor:
    mean = honest.mean(dim=0)
    if kind == "unit":
        norm = mean.norm()
        return -mean / norm if norm > 0 else torch.zeros_like(mean)
    if kind == "std":
        return -honest.std(dim=0) if len(honest) > 1 else torch.zeros_like(mean)
    return -mean.sign()


def squared_distances(honest: torch.Tensor, direction: torch.Tensor) -> Callable:
    """γ ↦ ‖mean + γ·p − g_i‖² for every honest i, from three float64 coefficients per row."""
    x = honest.to(torch.float64)
    offsets = x.mean(dim=0) - x                 # mean − g_i
    p = direction.to(torch.float64)
    constant, linear, quadratic = offsets.square().sum(dim=1), 2 * offsets @ p, p.square().sum()
    return lambda gamma: constant + gamma * linear + gamma * gamma * quadratic


def largest_feasible(feasible: Callable[[float], bool], start: float, tolerance: float,
                     max_doublings: int = 64) -> float:
    """The largest γ >= 0 with feasible(γ), to `tolerance`, assuming feasible γ form an interval
    containing 0 (the constraints are convex in γ and hold at 0). Unlike the paper's search,
    which cannot exceed 2·start, the bracket first doubles until γ is infeasible."""
    low, high = 0.0, start
    for _ in range(max_doublings):
        if not feasible(high):
            break
        low, high = high, 2 * high
    else:
        return low  # unbounded (a zero perturbation): every γ is feasible
    while high - low > tolerance:
        middle = (low + high) / 2
        if feasible(middle):
            low = middle
        else:
            high = middle
    return low


def constraint(honest: torch.Tensor, direction: torch.Tensor, rule: str) -> Callable:
    """feasible(γ) for rule 'max' (min-max) or 'sum' (min-sum)."""
    distances = squared_distances(honest, direction)
    pairwise = pairwise_sq_distances(honest)
    if rule == "max":
        threshold = pairwise.max()
        return lambda gamma: bool(distances(gamma).max() <= threshold)
    if rule != "sum":
        raise ValueError(f"rule must be 'max' or 'sum', not {rule!r}")
    threshold = pairwise.sum(dim=1).max()
    return lambda gamma: bool(distances(gamma).sum() <= threshold)


def craft(honest, f, rule, **options):
    """The f vectors of min-max (rule "max") or min-sum ("sum"); the options not given
    take their defaults from OPTIONS, the one place they are written."""
    options = {**OPTIONS, **options}
    gamma_init, tolerance = options["gamma_init"], options["tolerance"]
    direction = perturbation(honest, options["perturbation"])
    gamma = largest_feasible(constraint(honest, direction, rule), gamma_init, tolerance)
    return (honest.mean(dim=0) + gamma * direction).expand(f, -1).clone()


def check(perturbation, gamma_init, tolerance):
    if perturbation not in PERTURBATIONS:
        return f"perturbation must be one of {', '.join(PERTURBATIONS)}, not {perturbation!r}"
    if not (math.isfinite(gamma_init) and gamma_init > 0):
        return f"gamma_init must be a positive number, not {gamma_init}"
    if not (math.isfinite(tolerance) and tolerance > 0):
        return f"tolerance must be a positive number, not {tolerance}"
    return None
