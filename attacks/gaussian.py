"""Gaussian: every Byzantine worker sends an independent N(0, sigma²·I) vector."""
import math

import torch

from benchmark.api import Attack


def craft(honest, f, defense, sigma=200.0, *, generator):
    noise = torch.randn(f, honest.shape[1], generator=generator, dtype=honest.dtype,
                        device=generator.device)
    return (noise * sigma).to(honest.device)


def check(n, f, sigma):
    if not (math.isfinite(sigma) and sigma > 0):
        return f"sigma must be a positive finite standard deviation, not {sigma}"
    return None


attack = Attack(
    name="gaussian",
    attack=craft,
    check=check,
    randomized=True,
    description="Independent N(0, sigma^2 I) vectors (sigma = 200 by default)",
    reference="Xie et al., Generalized Byzantine-tolerant SGD, arXiv:1802.10116, 2018",
)
