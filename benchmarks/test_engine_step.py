"""pytest-benchmark suite: one full training step against one fused forward+backward.

The paper's MNIST configuration on Fashion-MNIST (same MLP, d = 79,510): n = 51,
f = 24, batch 83, `little` attack, worker momentum, all metrics on, one thread; the
step with `average`, `krum` and `median`, and the baseline: one forward+backward of
the model over the 27 × 83 = 2,241 samples the honest workers draw. Skipped where the
Fashion-MNIST files are missing; BENCH_QUICK=1 uses the embedded digits task instead.
`python -m benchmark profile-step` gives the same step stage by stage.
"""
import os

import pytest
import torch

from benchmark.api import UsageError
from benchmark.cli.profile_step import fused_baseline
from benchmark.config import make_config
from benchmark.engine import Simulation

QUICK = bool(os.environ.get("BENCH_QUICK"))
SETTINGS = (dict(task="digits", f=2) if QUICK else
            dict(task="fashion-mnist", n=51, f=24, batch_size=83))
ROUNDS = 3 if QUICK else 10


def simulation(defense: str) -> Simulation:
    try:
        config = make_config(defense=defense, attack="little", momentum_at="worker",
                             metrics=True, steps=10_000, **SETTINGS)
        return Simulation(config)
    except (UsageError, FileNotFoundError) as error:
        pytest.skip(f"{SETTINGS['task']} is not available here: {error}")


@pytest.mark.parametrize("defense", ["average", "krum", "median"])
def test_step(benchmark, defense):
    sim = simulation(defense)
    benchmark.group = "engine step"
    benchmark.extra_info.update(defense=defense, **SETTINGS)
    benchmark.pedantic(sim.step, rounds=ROUNDS, warmup_rounds=2, iterations=1)


def test_fused_forward_backward(benchmark):
    sim = simulation("average")
    benchmark.group = "engine step"
    benchmark.extra_info.update(samples=sim.honest_count * sim.config.batch_size, **SETTINGS)
    benchmark.pedantic(fused_baseline(sim, torch.Generator().manual_seed(0)),
                       rounds=ROUNDS, warmup_rounds=2, iterations=1)
