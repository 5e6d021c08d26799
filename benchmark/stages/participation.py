"""Partial participation: each step a seeded random subset of the n workers takes part.

With `participants = m` (RunConfig; None: every worker, every step), each step draws m
of the n workers uniformly without replacement from the run's "participation" stream.
Workers 0 .. h-1 are the honest ones (h = n - f_real), h .. n-1 the Byzantine ones, so
the number of Byzantine participants b_t varies from step to step (hypergeometric, at
most min(m, f_real)); `validate` requires m > f_real, so at least one honest worker always
takes part. The defense sees the m rows of the participants (m - b_t for an attack that
sends nothing) and is told the declared f, as without partial participation: the server
knows its bound on the Byzantine workers, not how many were drawn. The attack crafts
b_t vectors from the participating honest vectors only.

Every honest worker still draws its batch and updates its worker momentum each step
(so the data order is that of the full run); only the participants' vectors reach the
server, as when the others' messages are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Draw:
    honest: torch.Tensor     # indices of the participating honest workers, increasing
    byzantine: torch.Tensor  # indices (0-based among the Byzantine workers), increasing


class Participation:
    def __init__(self, n: int, participants: int, generator: torch.Generator):
        self.n, self.participants, self.generator = n, participants, generator
        self.byzantine_workers = None  # the attack's f for the whole run, set by select

    def draw(self, honest_workers: int) -> Draw:
        chosen = torch.randperm(self.n, generator=self.generator)[:self.participants]
        chosen = chosen.sort().values
        return Draw(chosen[chosen < honest_workers], chosen[chosen >= honest_workers]
                    - honest_workers)

    def select(self, sampled, honest, poisoned, attack):
        """This step's participants: their sampled and submitted rows, their poisoned rows
        (data-level attacks), and the attack told to send one vector per Byzantine
        participant until `restore`."""
        self.byzantine_workers = attack.f
        draw = self.draw(len(honest))
        attack.f = len(draw.byzantine) if attack.f else 0
        rows = draw.honest.to(honest.device)
        if poisoned is not None:
            poisoned = poisoned.index_select(0, draw.byzantine.to(poisoned.device))
        return sampled.index_select(0, rows), honest.index_select(0, rows), poisoned

    def restore(self, attack) -> None:
        """The attack's f back to every Byzantine worker (the workers stage computes the
        poisoned gradients of all of them)."""
        attack.f = self.byzantine_workers

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
