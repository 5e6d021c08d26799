"""A parameter server: the defense (with its per-run state and generator), update or
server momentum, and the parameters θ."""
from __future__ import annotations

import copy

import torch

from ..config import RunConfig
from ..plugins import BoundDefense
from .state import on_device, restored

TENSORS = ("theta", "theta0", "update_momentum", "previous_aggregate")


class Server:
    def __init__(self, config: RunConfig, theta: torch.Tensor, defense: BoundDefense,
                 device: torch.device):
        self.config, self.defense, self.device = config, defense, device
        self.theta = theta
        self.theta0 = theta.clone()
        self.update_momentum = torch.zeros_like(theta)
        self.previous_aggregate = torch.zeros_like(theta)

    def apply_update(self, aggregate: torch.Tensor, lr: float) -> None:
        """Update momentum (if placed here), then θ ← θ − lr·direction; keeps the aggregate
        for server momentum."""
        config, mu, keep = self.config, self.config.momentum, 1 - self.config.dampening
        self.previous_aggregate = aggregate
        direction = aggregate
        if config.momentum_at == "update":
            self.update_momentum.mul_(mu).add_(aggregate, alpha=keep)
            direction = (aggregate * keep + self.update_momentum * mu if config.nesterov
                         else self.update_momentum)
        self.theta = self.theta - lr * direction

    def state_dict(self) -> dict:
        return {"tensors": {name: getattr(self, name).clone() for name in TENSORS},
                "defense_states": copy.deepcopy(self.defense.states),
                "generator": self.defense.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for name in TENSORS:
            setattr(self, name, restored(name, getattr(self, name), state["tensors"][name]))
        self.defense.states = on_device(copy.deepcopy(state["defense_states"]), self.device)
        self.defense.generator.set_state(state["generator"])
