"""Sign mimic: the adversary of Blades against SignGuard (Li, Ai, Chen, Wang, Zhang,
"Blades: a unified benchmark suite for Byzantine attacks and defenses in federated
learning", IoTDI 2024; attack on SignGuard of Xu et al., ICDCS 2022).

SignGuard keeps the rows whose norm is near the median and whose sign statistics (the
fractions of positive, zero and negative coordinates) fall in the largest cluster. This
attack sends a random vector with exactly the honest mean's sign statistics and norm,
but no relation to its direction: as many positive, negative and zero coordinates as
the mean has, placed at random coordinates, magnitudes uniform in (0, 1), the whole
rescaled to scale × the median honest norm. Every Byzantine worker sends the same
vector, drawn afresh each step from the run's attack generator.
"""
import math

import torch

from benchmark.api import Attack


def craft(honest, f, defense, scale=1.0, *, generator):
    mean = honest.to(torch.float64).mean(dim=0)
    d = mean.shape[0]
    positive, negative = int((mean > 0).sum()), int((mean < 0).sum())  # NaN counts as 0
    where = generator.device
    magnitudes = torch.rand(d, generator=generator, dtype=torch.float64, device=where)
    signs = torch.zeros(d, dtype=torch.float64, device=where)
    signs[:positive], signs[positive:positive + negative] = 1.0, -1.0
    vector = (signs * magnitudes)[torch.randperm(d, generator=generator, device=where)]
    length = torch.linalg.vector_norm(vector)
    size = float(torch.linalg.vector_norm(honest.to(torch.float64), dim=1).median()) * scale
    if bool(length > 0):
        vector = vector * (size / length)
    return vector.to(device=honest.device, dtype=honest.dtype).expand(f, -1).clone()


def check(n, f, scale):
    if not (math.isfinite(scale) and scale > 0):
        return f"scale must be a positive number, not {scale}"
    return None


attack = Attack(
    name="signmimic",
    attack=craft,
    check=check,
    randomized=True,
    description="A random vector with the honest mean's sign statistics, at the median "
                "honest norm: the Blades adversary of SignGuard",
    reference="Li et al., Blades: a unified benchmark suite for Byzantine attacks and "
              "defenses in federated learning, IoTDI 2024",
)
