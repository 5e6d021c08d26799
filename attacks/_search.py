"""Shared code of the direction-based attacks (little, empire, bulyan).

Each of them sends f copies of `mean + x·a`, for an attack direction `a` computed from
the honest vectors, and either a fixed factor x or one found by the defense-aware line
search of the ICLR'21 harness (El Mhamdi, Guerraoui, Rouault, "Distributed Momentum for
Byzantine-resilient SGD", ICLR 2021): maximise ‖GAR(honest ∪ f copies of mean + x·a) − mean‖²
over x ≥ 0 with a bounded number of defense evaluations.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

SEARCH_HELP = "search is the line search's evaluation budget: 0 (off, use factor) or >= 2"


def line_maximize(objective: Callable[[float], float], budget: int, step: float = 1.0,
                  growth: float = 2.0, contraction: float = 0.8) -> tuple[float, float, int]:
    """Best-effort argmax of `objective` over x >= 0 within `budget` evaluations.

    Evaluates x = 0 first, so the result is never worse than x = 0. Expansion: from the best
    point, step forward, doubling the step while the objective improves. Contraction: probe
    alternately above and below the best point, the step shrinking by `contraction` each
    probe. A NaN objective counts as -inf. Returns (x, objective(x), evaluations used).
    """
    if budget < 1:
        raise ValueError("the line search needs a budget of at least one evaluation")
    evaluations = 0

    def evaluate(x: float) -> float:
        nonlocal evaluations
        evaluations += 1
        value = float(objective(x))
        return -math.inf if math.isnan(value) else value

    best_x, best_value = 0.0, evaluate(0.0)
    while evaluations < budget:
        x = best_x + step
        value = evaluate(x)
        if value <= best_value:
            break
        best_x, best_value = x, value
        step *= growth
    above = True  # the failed probe lies above the best point: look between them first
    while evaluations < budget:
        step *= contraction
        x = best_x + step if above or best_x - step < 0 else best_x - step
        above = not above
        value = evaluate(x)
        if value > best_value:
            best_x, best_value = x, value
    return best_x, best_value, evaluations


def along(honest: torch.Tensor, f: int, defense, direction: torch.Tensor, factor: float,
          search: int, mean: torch.Tensor | None = None) -> torch.Tensor:
    """f copies of mean + x·direction, x = factor, or the line search's x when search > 0;
    `mean`: the honest mean if the caller has it. The copies are one row expanded (a view:
    the harness copies the rows where it needs them)."""
    if mean is None:
        mean = honest.mean(dim=0)
    if search:
        def objective(x: float) -> float:
            byzantine = (mean + x * direction).expand(f, -1)
            aggregate = defense(torch.cat([honest, byzantine]))
            return float((aggregate - mean).square().sum())
        factor, _, _ = line_maximize(objective, search)
    return (mean + factor * direction).expand(f, -1)


def check_search(search: int) -> str | None:
    return None if search == 0 or search >= 2 else f"{SEARCH_HELP}, not {search}"
