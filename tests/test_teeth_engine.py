"""Issue 22, tests with teeth: engine behaviours that hand-made mutations showed unpinned.

Each test names the mutation it kills. They drive the engine only through
`Simulation(config).step()`, `engine.run`, `state_dict()` and plugins written into a
BENCHMARK_PLUGINS folder; the honest gradients are recomputed independently with plain
autograd (tests.teeth_helpers).
"""
import itertools

import pytest
import torch

from benchmark import engine
from benchmark.config import make_config
from tests import teeth_helpers
from tests.plugin_fixtures import write_plugin
from tests.teeth_helpers import CAPTURED, data_sampler, install_capture, match_rows, \
    reference_gradients


def captured_rows(plugin_dir, steps=1, **settings):
    """The defense's input at each of `steps` steps of an update-momentum run (the
    defense sees the clipped gradients themselves, shuffled)."""
    name = install_capture(plugin_dir)
    config = make_config(task="digits", defense=name, attack="none", n=5, f=0,
                         momentum_at="update", steps=steps, batch_size=16, **settings)
    sim = engine.Simulation(config)
    for _ in range(steps):
        sim.step()
    return [rows for rows, _ in CAPTURED]


# --- 1. clipping ------------------------------------------------------------------------
# Mutation killed: rows whose norm is within 5 % above the clip bound left unclipped
# (`clamp` replaced by "scale only when norm > 1.05 clip"), and clipping removed.

@pytest.fixture
def unclipped(plugin_dir):
    (rows,) = captured_rows(plugin_dir, clip=None)
    return rows


def test_a_small_clip_brings_every_row_exactly_to_the_bound(plugin_dir, unclipped):
    norms = unclipped.norm(dim=1)
    clip = float(norms.min()) / 1.02  # every row above the bound, one only 2 % above
    (clipped,) = captured_rows(plugin_dir, clip=clip)
    assert float(norms.min()) < 1.05 * clip
    # the same seed: same batches, same shuffle, so row i is row i of the unclipped run
    assert torch.allclose(clipped.norm(dim=1), torch.full((5,), clip), rtol=1e-5)
    assert (clipped.norm(dim=1) <= clip * (1 + 1e-6)).all()
    # direction kept: each row is its unclipped row times clip / norm
    assert torch.allclose(clipped, unclipped * (clip / norms)[:, None], rtol=1e-5, atol=1e-8)


def test_a_clip_between_the_norms_scales_only_the_rows_above_it(plugin_dir, unclipped):
    norms = unclipped.norm(dim=1)
    clip = float(norms.sort().values[2]) / 1.01  # the three longest rows are above it
    (clipped,) = captured_rows(plugin_dir, clip=clip)
    above = norms > clip
    assert above.sum() >= 3 and ((norms > clip) & (norms < 1.05 * clip)).any()
    assert torch.equal(clipped[~above], unclipped[~above])  # untouched, to the bit
    assert torch.allclose(clipped[above].norm(dim=1), torch.full((int(above.sum()),), clip),
                          rtol=1e-5)
    assert torch.allclose(clipped[above], unclipped[above] * (clip / norms[above])[:, None],
                          rtol=1e-5, atol=1e-8)


def test_a_clip_above_every_norm_changes_nothing(plugin_dir, unclipped):
    clip = 1.5 * float(unclipped.norm(dim=1).max())
    (clipped,) = captured_rows(plugin_dir, clip=clip)
    assert torch.equal(clipped, unclipped)


# --- 5. label flipping ------------------------------------------------------------------
# Mutation killed: the Byzantine rows of `labelflip` replaced by honest gradients (e.g. the
# first f honest rows) instead of the gradients computed on flipped labels.

def test_labelflip_rows_are_the_gradients_of_the_flipped_batches(plugin_dir):
    name = install_capture(plugin_dir)
    config = make_config(task="digits", defense=name, attack="labelflip", n=7, f=2,
                         momentum_at="update", steps=2, batch_size=16)
    sim, sampler = engine.Simulation(config), data_sampler(config)
    honest = config.n - config.f
    for step in range(2):
        theta = sim.theta.clone()
        sim.step()
        indices = sampler.next_batches(config.n)  # honest workers first, then Byzantine
        expected = reference_gradients(config, theta, indices, flipped_from=honest)
        seen, _ = CAPTURED[step]
        match_rows(seen, expected)
        # what the Byzantine workers would have sent had they not flipped their labels
        unflipped = reference_gradients(config, theta, indices[honest:])
        for row in expected[honest:]:
            assert all((row - other).norm() > 1e-3 * row.norm()
                       for other in itertools.chain(expected[:honest], unflipped))


# --- 7. the input guard -----------------------------------------------------------------
# Mutation killed: after the defense, only the honest rows compared with their sources, so a
# defense that rewrites a Byzantine row through numpy goes unnoticed.

MARKER = 7.25


def test_a_defense_writing_a_byzantine_row_through_numpy_fails_the_cell(plugin_dir):
    write_plugin(plugin_dir, "attacks", "teeth_marker", f"""
        from benchmark.api import Attack
        def attack(honest, f, defense):
            return honest.new_full((f, honest.shape[1]), {MARKER})
        attack = Attack(name="teeth-marker", attack=attack)
    """)
    write_plugin(plugin_dir, "defenses", "teeth_numpy_writer", f"""
        import torch
        from benchmark.api import Defense
        from tests import teeth_helpers
        def aggregate(gradients, f):
            rows = gradients.numpy()              # shares memory: torch sees no write
            marked = (rows == {MARKER}).all(axis=1)
            teeth_helpers.CAPTURED.append((torch.from_numpy(marked.copy()), None))
            honest = torch.from_numpy(rows[~marked].copy()).mean(dim=0)
            rows[marked] = 0.0                    # only the Byzantine rows are rewritten
            return honest
        defense = Defense(name="teeth-numpy-writer", aggregate=aggregate)
    """)
    CAPTURED.clear()
    config = make_config(task="digits", defense="teeth-numpy-writer", attack="teeth-marker",
                         n=7, f=2, steps=2, batch_size=16)
    outcome = engine.run(config, lambda row: None, lambda row: None)
    (marked, _), = CAPTURED  # the first step already fails
    assert int(marked.sum()) == 2 and not marked.all()
    assert outcome.status == "failed"
    assert outcome.reason == "defense modified its input gradients"  # only it reaches them
    assert outcome.steps_done == 0


def test_an_honest_row_written_through_numpy_could_be_either_plugins_doing(plugin_dir):
    """In the run's process, a write outside torch to an honest row is seen only when the
    copy is compared again: the attack could have written the row it was given too."""
    write_plugin(plugin_dir, "defenses", "teeth_honest_writer", """
        from benchmark.api import Defense
        def aggregate(gradients, f):
            mean = gradients.mean(dim=0)
            gradients.numpy()[:] = 0.0  # every row, the honest ones included
            return mean
        defense = Defense(name="teeth-honest-writer", aggregate=aggregate)
    """)
    config = make_config(task="digits", defense="teeth-honest-writer", attack="none", n=5,
                         f=0, steps=2, batch_size=16)
    outcome = engine.run(config, lambda row: None, lambda row: None)
    assert outcome.status == "failed"
    assert outcome.reason == (
        "attack modified the honest vectors it was given, or defense modified its input "
        "gradients: an honest row changed outside torch (e.g. through .numpy()), after the "
        "harness copied it for the defense and before it compared the copy again, so either "
        "plugin may have written it")


# --- 4. stream seeds --------------------------------------------------------------------
# Mutation killed: every stream of a run seeded with one and the same value.

def test_the_streams_of_a_run_have_distinct_seeds_across_run_seeds():
    seeds = [engine.stream_seed(seed, stream) for seed, stream in
             itertools.product(list(range(200)) + [2 ** 31 - 1, 2 ** 40], engine.STREAMS)]
    assert len(set(seeds)) == len(seeds)
    # the first five are a plain run's; later ones (replicated servers) are appended, so
    # that every stored run keeps its seeds
    assert engine.STREAMS[:5] == ("model", "data", "shuffle", "defense", "attack")


def test_each_streams_generator_starts_apart_and_moves_with_the_run_seed():
    def simulation(seed):
        return engine.Simulation(make_config(task="digits", defense="median", attack="little",
                                             steps=1, seed=seed))
    one, again, two = simulation(1), simulation(1), simulation(2)
    states = {seed: sim.state_dict() for seed, sim in ((1, one), (2, two))}
    generators = states[1]["generators"]
    for a, b in itertools.combinations(sorted(generators), 2):  # shuffle, defense, attack
        assert not torch.equal(generators[a], generators[b]), (a, b)
    for name in generators:
        assert torch.equal(generators[name], again.state_dict()["generators"][name])
        assert not torch.equal(generators[name], states[2]["generators"][name]), name
    # data order and initialisation follow the seed too
    assert not torch.equal(states[1]["sampler"]["order"], states[2]["sampler"]["order"])
    assert torch.equal(states[1]["sampler"]["order"], again.state_dict()["sampler"]["order"])
    assert not torch.equal(one.theta, two.theta) and torch.equal(one.theta, again.theta)


def test_the_seed_alone_changes_the_shuffle(plugin_dir):
    """Two runs given the same parameters and data order but other seeds: the defense gets
    the same rows in another order."""
    name = install_capture(plugin_dir)
    runs = [engine.Simulation(make_config(task="digits", defense=name, attack="none", n=11,
                                          f=0, momentum_at="update", steps=1, seed=seed))
            for seed in (1, 2)]
    runs[1].theta = runs[0].theta.clone()
    runs[1].sampler.load_state_dict(runs[0].sampler.state_dict())
    for run in runs:
        run.step()
    (first, _), (second, _) = CAPTURED
    pairing = match_rows(second, first, rtol=0, atol=0)
    assert pairing != list(range(11))


# --- momentum: against torch.optim.SGD and a hand computation -------------------------
# Mutations killed: Nesterov ignored (or its terms swapped) at the update; the default
# (dampening 0) worker-momentum path computing m <- m + mu*g instead of m <- mu*m + g.

@pytest.mark.parametrize("nesterov", [True, False])
def test_update_momentum_is_torch_sgd_on_the_aggregates(plugin_dir, nesterov):
    name = install_capture(plugin_dir)
    config = make_config(task="digits", defense=name, attack="none", n=5, f=0, steps=4,
                         momentum_at="update", momentum=0.9, dampening=0.0, lr=0.1,
                         nesterov=nesterov)
    sim = engine.Simulation(config)
    parameter = torch.nn.Parameter(sim.theta.clone())
    optimizer = torch.optim.SGD([parameter], lr=0.1, momentum=0.9, nesterov=nesterov)
    for step in range(4):
        sim.step()
        parameter.grad = CAPTURED[step][1].clone()
        optimizer.step()
        assert torch.allclose(sim.theta, parameter.detach(), rtol=1e-5, atol=1e-7), step


def test_worker_momentum_without_dampening_by_hand(plugin_dir):
    name = install_capture(plugin_dir)
    mu, lr = 0.9, 0.1
    config = make_config(task="digits", defense=name, attack="none", n=4, f=0, steps=3,
                         momentum_at="worker", momentum=mu, dampening=0.0, lr=lr,
                         batch_size=16)
    assert config.dampening == 0.0 and not config.nesterov
    sim, sampler = engine.Simulation(config), data_sampler(config)
    momenta = torch.zeros(4, sim.theta.numel())
    for step in range(3):
        theta = sim.theta.clone()
        sim.step()
        gradients = reference_gradients(config, theta, sampler.next_batches(4))
        momenta = mu * momenta + gradients          # m_i <- mu m_i + g_i
        seen, aggregate = CAPTURED[step]
        match_rows(seen, momenta)
        assert torch.allclose(sim.theta, theta - lr * aggregate, rtol=1e-6, atol=1e-8)
        assert torch.allclose(aggregate, momenta.mean(dim=0), rtol=1e-4, atol=1e-6)


def test_teeth_helpers_capture_is_the_plain_average(plugin_dir):
    """The recording defense must not change a run: same bytes as `average`."""
    name = install_capture(plugin_dir)
    rows = []
    for defense in (name, "average"):
        sim = engine.Simulation(make_config(task="digits", defense=defense, attack="little",
                                            steps=2, n=7, f=2))
        rows.append([sim.step()["defense_norm"] for _ in range(2)])
    assert rows[0] == rows[1]
    assert len(teeth_helpers.CAPTURED) == 2
