"""The adversary: the only stage that knows about attacks. It crafts the Byzantine
workers' vectors (an attack plugin, which may probe the defense), or, for a data-level
attack, controls extra workers whose labels it rewrites (the workers stage computes
their gradients like any other's)."""
from __future__ import annotations

import copy

import torch

from ..plugins import BoundAttack
from .state import on_device


class Adversary:
    def __init__(self, attack: BoundAttack):
        self.attack = attack

    @property
    def f(self) -> int:
        return self.attack.f

    @property
    def data_level(self) -> bool:
        return self.attack.spec.flip_labels is not None and self.attack.f > 0

    @property
    def data_workers(self) -> int:
        """Workers the adversary runs through the honest pipeline with poisoned labels."""
        return self.attack.f if self.data_level else 0

    def poison_targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        return self.attack.spec.flip_labels(targets, num_classes)

    @property
    def rows(self) -> int:
        """How many rows the Byzantine workers add to the defense's input."""
        return self.attack.f if self.attack.sends_vectors or self.data_level else 0

    def vectors(self, honest: torch.Tensor, defense, poisoned: torch.Tensor | None
                ) -> torch.Tensor:
        """The Byzantine rows: the poisoned workers' gradients, or the attack's vectors
        crafted from what the honest workers submit."""
        return poisoned if poisoned is not None else self.attack(honest, defense)

    def state_dict(self) -> dict:
        return {"attack_states": copy.deepcopy(getattr(self.attack, "states", None)),
                "generator": self.attack.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if state["attack_states"] is not None:
            self.attack.states = on_device(copy.deepcopy(state["attack_states"]), device)
        self.attack.generator.set_state(state["generator"])
