"""Template for a new attack: copy this file to attacks/<your_attack>.py and edit it.

Discovery finds the module-level `attack` object; nothing else needs registering.
"""
import torch

from benchmark.api import Attack


def craft(honest: torch.Tensor, f: int, defense, *, scale: float = -1.0) -> torch.Tensor:
    # honest: Tensor[h, d], the vectors honest workers submit this step (after momentum);
    # never modify it. f: how many Byzantine vectors to return.
    # defense(gradients) -> Tensor[d] runs the defense under attack, for attacks that
    # search against it (it does not advance the defense's state).
    # Return Tensor[f, d]. Keyword arguments with defaults are the attack's options,
    # typed by their default (`template:scale=2`); the harness passes every one.
    return (honest.mean(dim=0) * scale).expand(f, -1).clone()


def check(n: int, f: int, *, scale: float) -> str | None:
    # Return why (n, f, options) cannot work, or None.
    return None


attack = Attack(
    name="template",
    attack=craft,
    check=check,
    description="Every Byzantine worker sends scale x the honest mean (an example)",
    reference="-",
)
