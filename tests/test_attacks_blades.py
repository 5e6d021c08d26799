"""Issue #20: the Blades adversaries of clipped
clustering (chain) and SignGuard (signmimic), on examples checked by hand and through
the harness."""
import math

import torch

from attacks import chain, signmimic
from benchmark.api import UsageError
from benchmark.plugins import BoundAttack, BoundDefense

import pytest


def average(gradients):
    return gradients.mean(dim=0)


def test_chain_by_hand():
    # mean (1, 1)/2·… : honest e1 and e2, mean direction u = (1, 1)/√2, θ = 45°, and the
    # smallest honest angle is 90°: links at 135° and 180° from u, at the median norm 1
    honest = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sent = chain.craft(honest, 2, average)
    r = 1 / math.sqrt(2)
    # the extreme row is e1 (lowest index on the tie); w = (1, -1)/√2
    assert torch.allclose(sent[0], torch.tensor([0.0, -1.0]), atol=1e-6)  # 135°
    assert torch.allclose(sent[1], torch.tensor([-r, -r]), atol=1e-6)     # capped at 180°


def test_chain_links_are_one_smallest_honest_angle_apart():
    g = torch.Generator().manual_seed(3)
    honest = torch.randn(9, 30, generator=g) + 1.0
    sent = chain.craft(honest, 4, average, scale=2.0).to(torch.float64)
    units = chain.unit_rows(honest.to(torch.float64))
    step = chain.smallest_angle(units)
    u = honest.to(torch.float64).mean(dim=0)
    u = u / u.norm()
    theta = max(math.acos(float(c)) for c in (units @ u).clamp(-1, 1))
    for k, link in enumerate(chain.unit_rows(sent), start=1):
        angle = math.acos(float((link @ u).clamp(-1, 1)))
        assert math.isclose(angle, min(theta + k * step, math.pi), abs_tol=1e-5)
    median = float(honest.norm(dim=1).median())
    assert torch.allclose(sent.norm(dim=1), torch.full((4,), 2 * median, dtype=torch.float64))


def test_chain_degenerate_inputs():
    same = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    assert torch.allclose(chain.craft(same, 2, average), -same)  # parallel: -ν·u
    zero = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert torch.equal(chain.craft(zero, 3, average), torch.zeros(3, 2))
    assert chain.check(11, 2, scale=0.0) and chain.check(11, 2, scale=math.nan)


def test_signmimic_copies_the_sign_statistics_and_the_median_norm():
    honest = torch.tensor([[1.0, -2.0, 0.0, 3.0, 0.0, 1.0], [2.0, -1.0, 0.0, 1.0, 0.0, -1.0]])
    sent = signmimic.craft(honest, 3, average, generator=torch.Generator().manual_seed(0))
    assert sent.shape == (3, 6) and torch.equal(sent[0], sent[2])
    mean = honest.mean(dim=0)  # 3 positive, 1 negative, 2 zero coordinates
    for statistic in (lambda v: (v > 0).sum(), lambda v: (v < 0).sum(), lambda v: (v == 0).sum()):
        assert int(statistic(sent[0])) == int(statistic(mean))
    assert math.isclose(float(sent[0].norm()), float(honest.norm(dim=1).median()), rel_tol=1e-6)


def test_signmimic_is_seeded_and_randomized(generator):
    honest = torch.randn(7, 50, generator=torch.Generator().manual_seed(1))
    a = signmimic.craft(honest, 1, average, generator=torch.Generator().manual_seed(5))
    b = signmimic.craft(honest, 1, average, generator=torch.Generator().manual_seed(5))
    c = signmimic.craft(honest, 1, average, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert signmimic.attack.randomized
    with pytest.raises(UsageError, match="scale"):
        BoundAttack("signmimic:scale=-1", 2, generator).check(11)


@pytest.mark.parametrize("name", ["chain", "signmimic", "mimic:keep_after=3"])
def test_blades_attacks_run_in_a_short_digits_run(name):
    from benchmark import engine
    from benchmark.config import make_config
    defense = {"chain": "clippedclustering", "signmimic": "signguard"}.get(name, "median")
    config = make_config(task="digits", defense=defense, attack=name, steps=3,
                         eval_every=3, batch_size=8, n=9, f=2)
    simulation = engine.Simulation(config)
    for _ in range(3):
        simulation.step()
    assert bool(torch.isfinite(simulation.theta).all())
