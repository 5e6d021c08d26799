"""Fang et al.'s full-knowledge attack tailored to trimmed mean (and median), in gradient space.

Per coordinate j, with s_j = sign(honest mean_j), min_j and max_j the honest extremes, each
Byzantine worker draws a value uniformly beyond the extreme opposite to s_j:
    s_j > 0: in [min_j / b, min_j] if min_j > 0, else [b·min_j, min_j];
    s_j < 0: in [max_j, b·max_j] if max_j > 0, else [max_j, max_j / b];
    s_j = 0: the mean.
"""
import torch

from benchmark.api import Attack


def craft(honest, f, defense, b=2.0, *, generator):
    mean = honest.mean(dim=0)
    low, high = honest.min(dim=0).values, honest.max(dim=0).values
    below_start = torch.where(low > 0, low / b, low * b)
    above_end = torch.where(high > 0, high * b, high / b)
    uniform = torch.rand(f, honest.shape[1], generator=generator, dtype=honest.dtype,
                         device=generator.device).to(honest.device)
    below = below_start + uniform * (low - below_start)
    above = high + uniform * (above_end - high)
    return torch.where(mean > 0, below, torch.where(mean < 0, above, mean))


def check(n, f, b):
    return None if b > 1 else f"b must be larger than 1 (Fang et al. use b = 2), not {b}"


attack = Attack(
    name="fang-trmean",
    attack=craft,
    check=check,
    randomized=True,
    description="Per coordinate, uniform values beyond the honest extreme opposite to the "
                "mean's sign, within a factor b (tailored to trimmed mean and median)",
    reference="Fang et al., Local model poisoning attacks to Byzantine-robust federated "
              "learning, USENIX Security 2020",
)
