"""Attacks inside the real engine: label flipping, and every attack against every defense."""
import itertools

import pytest
import torch

from benchmark import engine, registry
from benchmark.api import UsageError
from benchmark.config import PLACEMENTS, make_config


def record_batches(sim):
    """Wraps the simulation's sampler and gradient function to see each worker's batch."""
    seen = {}
    next_batches, worker_gradients = sim.sampler.next_batches, sim.functions.worker_gradients

    def batches(workers):
        seen["indices"] = next_batches(workers)
        return seen["indices"]

    def gradients(theta, inputs, targets, **options):
        seen["targets"] = targets.clone()
        return worker_gradients(theta, inputs, targets, **options)
    sim.sampler.next_batches, sim.functions.worker_gradients = batches, gradients
    return seen


@pytest.mark.parametrize("f, f_real", [(2, 2), (3, 1)])
def test_labelflip_flips_labels_of_byzantine_workers_only(f, f_real):
    config = make_config(task="digits", defense="median", attack="labelflip", n=11, f=f,
                         f_real=f_real, steps=2, batch_size=8, momentum_at="worker")
    sim = engine.Simulation(config)
    seen = record_batches(sim)
    sim.step()
    honest = config.n - f_real
    original = sim.data.train_targets[seen["indices"]]
    assert seen["targets"].shape == (config.n, 8)  # honest workers, then the Byzantine ones
    assert torch.equal(seen["targets"][:honest], original[:honest])
    assert torch.equal(seen["targets"][honest:], 9 - original[honest:])
    assert not torch.equal(seen["targets"][honest:], original[honest:])


def test_without_label_flipping_no_label_changes():
    sim = engine.Simulation(make_config(task="digits", defense="median", attack="little",
                                        steps=1, batch_size=8))
    seen = record_batches(sim)
    sim.step()
    assert seen["targets"].shape[0] == sim.honest_count
    assert torch.equal(seen["targets"], sim.data.train_targets[seen["indices"]])


def test_a_nan_attack_is_blamed_on_the_defense_that_lets_it_through():
    config = make_config(task="digits", defense="average", attack="nan", steps=2)
    outcome = engine.run(config, lambda row: None, lambda row: None)
    assert outcome.status == "failed" and "non-finite" in outcome.reason


@pytest.mark.slow
def test_every_attack_runs_against_every_defense():
    """Two steps per pair; placements and f values rotate so that every attack meets all
    three placements and both quick-profile f values across the defenses. Pre-aggregators
    run in front of median."""
    attacks = registry.names("attack")
    defenses = [f"{name}+median" if registry.lookup("defense", name).spec.preaggregator else name
                for name in registry.names("defense")]
    ran = 0
    for (i, attack), (j, defense) in itertools.product(enumerate(attacks), enumerate(defenses)):
        config = make_config(task="digits", defense=defense, attack=attack, steps=2,
                             eval_every=2, batch_size=8, f=(2, 4)[(i + j) % 2],
                             momentum_at=PLACEMENTS[(i + j) % 3], time_budget=60)
        try:
            outcome = engine.run(config, lambda row: None, lambda row: None)
        except UsageError:
            continue  # the matrix lists such a cell as invalid and does not run it
        assert outcome.status in ("ok", "failed", "diverged"), (attack, defense)
        if outcome.status == "failed":
            assert not outcome.reason.startswith("attack"), (attack, defense, outcome.reason)
        ran += 1
    assert ran >= len(attacks) * len(defenses) // 2
