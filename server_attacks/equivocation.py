"""Equivocation: each Byzantine server tells different recipients different things, half
of them mean + factor·σ and the other half mean − factor·σ, pulling the correct
servers (and the workers) apart. σ is the correct models' coordinate-wise spread, plus
`floor`·|mean| so that identical correct models still get pulled apart."""
from benchmark.api import ServerAttack

from server_attacks._models import mean_and_spread


def craft(models, f, recipients, factor=1.5, floor=0.01):
    mean, spread = mean_and_spread(models)
    push = factor * (spread + floor * mean.abs())
    signs = models.new_ones(recipients)
    signs[1::2] = -1
    per_recipient = mean + signs.unsqueeze(1) * push  # [recipients, d]
    return per_recipient.unsqueeze(0).repeat(f, 1, 1)


def check(n, f, factor, floor):
    if factor < 0 or floor < 0:
        return f"factor and floor must be non-negative, not {factor} and {floor}"
    return None


server_attack = ServerAttack(
    name="equivocation",
    attack=craft,
    check=check,
    description="different models to different recipients: mean + factor * spread to "
                "half of them, mean - factor * spread to the others",
    reference="El-Mhamdi et al., Genuinely distributed Byzantine machine learning, PODC 2020",
)
