"""The honest workers: batches, per-worker gradients (+ l2), local steps, clipping, and
worker or server momentum. They know nothing of attacks: an adversary that acts on data
hands in extra workers whose batch labels it rewrites (`DataPoisoner`)."""
from __future__ import annotations

import functools
from typing import Protocol

import torch

from .. import local_steps
from ..api import TaskData
from ..config import RunConfig
from ..gradients import ModelFunctions
from .state import restored


class DataPoisoner(Protocol):
    """Who controls `data_workers` extra workers and rewrites their batches' labels."""
    data_workers: int

    def poison_targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor: ...


class NoPoisoner:
    """The DataPoisoner of workers nobody attacks (the server's own root worker)."""
    data_workers = 0

    def poison_targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        return targets


class HonestWorkers:
    """`count` honest workers sharing one sampler; holds worker momentum and the count of
    training points used."""

    def __init__(self, config: RunConfig, data: TaskData, functions: ModelFunctions,
                 sampler, count: int, device: torch.device):
        self.config, self.data, self.functions = config, data, functions
        self.sampler, self.count, self.device = sampler, count, device
        self.worker_momentum = torch.zeros(count, functions.dimension, device=device)
        self.points = 0

    def gradients(self, theta: torch.Tensor, lr: float, poisoner: DataPoisoner
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped gradients and losses of the honest workers, then of the poisoner's
        workers: [count + data_workers, d] and [count + data_workers]. `theta` is one model
        [d] or one per worker [count + data_workers, d]."""
        config = self.config
        workers = self.count + poisoner.data_workers
        inputs, targets = self.batches(workers, poisoner)
        if theta.dim() == 1:
            gradients, losses = self.functions.worker_gradients(theta, inputs, targets,
                                                                l2=config.l2)
        else:
            gradients, losses = self.functions.gradients_at(theta, inputs, targets,
                                                            l2=config.l2)
        if config.local_steps > 1:  # see benchmark.local_steps; K = 1 is the line above
            gradients, losses = local_steps.accumulate(
                self.functions, theta, gradients, losses,
                functools.partial(self.batches, workers, poisoner), lr=lr,
                l2=config.l2, steps=config.local_steps)
        if config.clip is not None:
            norms = gradients.norm(dim=1, keepdim=True)
            gradients.mul_((config.clip / norms).clamp_(max=1.0))
        self.points += self.count * config.batch_size * config.local_steps
        return gradients, losses

    def batches(self, workers: int, poisoner: DataPoisoner
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of each worker (inputs [w, b, ...], targets [w, b]); the labels
        of the poisoner's rows (after the honest ones) rewritten by it."""
        data = self.data
        indices = self.sampler.next_batches(workers).to(self.device)
        flat = indices.reshape(-1)  # index_select: ~4x faster than indexing by a 2-d tensor
        inputs = data.train_inputs.index_select(0, flat).view(*indices.shape,
                                                              *data.train_inputs.shape[1:])
        targets = data.train_targets.index_select(0, flat).view(indices.shape)
        if poisoner.data_workers:
            targets = targets.clone()
            targets[self.count:] = poisoner.poison_targets(targets[self.count:],
                                                           data.num_classes)
        return inputs, targets

    def submissions(self, sampled: torch.Tensor, previous_aggregate: torch.Tensor
                    ) -> torch.Tensor:
        """What the honest workers send: worker momentum applied, or server momentum
        (previous_aggregate, the server's last output), or the gradients themselves."""
        config, mu, keep = self.config, self.config.momentum, 1 - self.config.dampening
        if config.momentum_at == "worker":
            if keep == 1:  # one pass instead of two: m ← g + μm
                torch.add(sampled, self.worker_momentum, alpha=mu, out=self.worker_momentum)
            else:
                self.worker_momentum.mul_(mu).add_(sampled, alpha=keep)
            if config.nesterov:
                return sampled * keep + self.worker_momentum * mu
            return self.worker_momentum  # read-only below: a plugin that writes to it fails
        if config.momentum_at == "server":
            return sampled * keep + previous_aggregate * mu
        return sampled

    def state_dict(self) -> dict:
        return {"points": self.points, "worker_momentum": self.worker_momentum.clone(),
                "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.points = state["points"]
        self.worker_momentum = restored("worker_momentum", self.worker_momentum,
                                        state["worker_momentum"])
        self.sampler.load_state_dict(state["sampler"])
