"""Sign flipping: each Byzantine worker sends the negation of an honest gradient."""
import torch

from benchmark.api import Attack


def craft(honest, f, defense, scale=1.0):
    # Byzantine worker i flips honest vector i mod h: the vector it would have sent had it
    # been honest is distributed like any honest one.
    rows = torch.arange(f, device=honest.device) % len(honest)
    return honest[rows] * -scale


def check(n, f, scale):
    return None if scale > 0 else f"scale must be positive, not {scale} (it sends -scale·g)"


attack = Attack(
    name="signflip",
    attack=craft,
    check=check,
    description="Byzantine worker i sends -scale * (honest vector i mod h)",
    reference="Li et al., RSA: Byzantine-robust stochastic aggregation methods, AAAI 2019",
)
