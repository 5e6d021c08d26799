"""Template for a new defense: copy this file to defenses/<your_rule>.py and edit it.

Discovery finds the module-level `defense` object; nothing else needs registering.
Run it with `python -m benchmark run --defense <name>`.
"""
import torch

from benchmark.api import AtLeast, Defense


def aggregate(gradients: torch.Tensor, f: int, *, scale: float = 1.0) -> torch.Tensor:
    # gradients: Tensor[n, d], rows in a fresh random order each step; never modify it.
    # f: the declared number of Byzantine rows. Return one Tensor[d] of the same dtype.
    # Use tensor operations (no Python loops over rows) so the rule runs on CPU and GPU.
    # Keyword arguments with defaults are the rule's options, typed by their default
    # (`template:scale=2`); the harness always passes every one of them.
    return gradients.mean(dim=0) * scale


def check(n: int, f: int, *, scale: float) -> str | None:
    # Return why the options cannot work, or None; the run stops before it starts.
    # The requirement on n and f goes in `needs`: the harness checks it before this.
    if scale <= 0:
        return "scale must be positive"
    return None


defense = Defense(
    name="template",                      # the name used on the command line
    aggregate=aggregate,
    check=check,
    description="Scaled average (an example, not a robust rule)",
    reference="-",                        # the paper that defines the rule
    needs=AtLeast(plus=1),                # n >= times*f + plus, e.g. AtLeast(2, 1): n >= 2f+1
    upper_bound=None,                     # (n, f, d) -> bound on deviation/norm, if known
)
