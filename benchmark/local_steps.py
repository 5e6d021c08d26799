"""Several local SGD steps per communication round (RunConfig.local_steps = K).

From the current model θ, each worker takes K plain SGD steps with the round's learning
rate, each on a fresh batch of its own: θ_i ← θ_i − lr·(∇L(θ_i; batch_k) + l2·θ_i). It then
sends its accumulated update expressed as a gradient, (θ − θ_i) / lr, which is the sum of
its K local gradients (computed as that sum, which avoids the rounding of the difference).
The engine clips the sent vector and applies worker or server momentum to it, exactly as
to a single gradient: local steps are momentum-free SGD, momentum and clipping act on what
is communicated. The first local gradient is the engine's ordinary gradient at θ, so K = 1
is the standard step.
"""
from __future__ import annotations

from typing import Callable

import torch

from .gradients import ModelFunctions

Batches = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def accumulate(functions: ModelFunctions, theta: torch.Tensor, first: torch.Tensor,
               first_losses: torch.Tensor, next_batches: Batches, *, lr: float, l2: float,
               steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Continues from the first local gradients `first` [w, d] (at θ, l2 included) for
    `steps` − 1 more local steps; returns (the sum of each worker's `steps` local gradients,
    each worker's training loss averaged over its `steps` batches)."""
    local = theta - lr * first
    total, loss_total = first.clone(), first_losses.clone()
    for _ in range(steps - 1):
        inputs, targets = next_batches()
        gradients, losses = functions.unfused_gradients_at(local, inputs, targets)
        if l2:
            gradients.add_(local, alpha=l2)
        local.sub_(gradients, alpha=lr)
        total.add_(gradients)
        loss_total.add_(losses)
    return total, loss_total / steps
