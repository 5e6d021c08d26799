"""The simulated step follows the protocol's formulas and is a pure function of the seed."""
import pytest
import torch

from benchmark import engine
from benchmark.cells import run_cell
from benchmark.config import make_config

# Two honest workers, three parameters, two steps; mu = 0.5, dampening 0.2, lr 0.1.
G1 = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
G2 = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 4.0]])


def tiny_simulation(placement, nesterov=False):
    config = make_config(task="template", n=2, f=0, defense="average", attack="none",
                         momentum_at=placement, momentum=0.5, dampening=0.2, lr=0.1,
                         nesterov=nesterov, steps=2)
    sim = engine.Simulation(config)
    sim.theta = torch.zeros(3)
    sim.theta0 = torch.zeros(3)
    sim.worker_momentum = torch.zeros(2, 3)
    sim.update_momentum = torch.zeros(3)
    sim.previous_aggregate = torch.zeros(3)
    batches = iter([G1, G2])
    sim._gradients = lambda: (next(batches).clone(), torch.zeros(2), None)
    submitted = []
    submissions = sim._submissions
    sim._submissions = lambda sampled: (lambda honest: (submitted.append(honest.clone()),
                                                        honest)[1])(submissions(sampled))
    return sim, submitted


@pytest.mark.parametrize("placement, second_submission, theta", [
    # worker: m1 = 0.8 G1; m2 = 0.5 m1 + 0.8 G2; theta moves by -0.1 * mean(m)
    ("worker", [[0.4, 1.6, 1.2], [2.8, 1.6, 3.6]], [-0.32, -0.32, -0.40]),
    # server: submissions 0.8 G + 0.5 * previous aggregate (0.8 * mean G1 = 1.6)
    ("server", [[0.8, 1.6, 0.8], [2.4, 1.6, 4.0]], [-0.32, -0.32, -0.40]),
    # update: workers submit G; m1 = 0.8 mean G1 = 1.6; m2 = 0.5 m1 + 0.8 mean G2
    ("update", [[0.0, 1.0, 0.0], [2.0, 1.0, 4.0]], [-0.32, -0.32, -0.40]),
])
def test_each_placement_follows_its_formula(placement, second_submission, theta):
    sim, submitted = tiny_simulation(placement)
    sim.step()
    sim.step()
    assert torch.allclose(submitted[1], torch.tensor(second_submission))
    assert torch.allclose(sim.theta, torch.tensor(theta))


def test_update_momentum_state_after_two_steps():
    sim, _ = tiny_simulation("update")
    sim.step()
    assert torch.allclose(sim.update_momentum, torch.tensor([1.6, 1.6, 1.6]))
    sim.step()
    assert torch.allclose(sim.update_momentum, torch.tensor([1.6, 1.6, 2.4]))


def test_nesterov_at_the_worker():
    sim, submitted = tiny_simulation("worker", nesterov=True)
    sim.step()
    # m1 = 0.8 G1, submission = 0.8 G1 + 0.5 m1 = 1.2 G1
    assert torch.allclose(submitted[0], 1.2 * G1)
    assert torch.allclose(sim.theta, torch.full((3,), -0.24))


def test_nesterov_at_the_update():
    sim, _ = tiny_simulation("update", nesterov=True)
    sim.step()
    # m1 = 0.8 * 2; direction = 0.8 * 2 + 0.5 * m1 = 2.4
    assert torch.allclose(sim.theta, torch.full((3,), -0.24))


def test_clipping_scales_only_long_gradients():
    config = make_config(task="template", n=3, f=0, clip=1.0, l2=0.0, steps=1)
    sim = engine.Simulation(config)
    sampled, _, _ = sim._gradients()
    norms = sampled.norm(dim=1)
    assert (norms <= 1.0 + 1e-6).all()
    config = make_config(task="template", n=3, f=0, clip=None, l2=0.0, steps=1)
    unclipped, _, _ = engine.Simulation(config)._gradients()
    long_rows = unclipped.norm(dim=1) > 1.0
    assert torch.allclose(sampled[~long_rows], unclipped[~long_rows])
    assert torch.allclose(sampled[long_rows],
                          unclipped[long_rows] / unclipped[long_rows].norm(dim=1, keepdim=True))


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path):
    settings = dict(defense="krum", attack="little", momentum_at="worker", steps=8, eval_every=4)
    first = run_cell(make_config(**settings, seed=3), tmp_path / "a")
    again = run_cell(make_config(**settings, seed=3), tmp_path / "b")
    other = run_cell(make_config(**settings, seed=4), tmp_path / "c")
    for name in ("metrics.csv", "eval.csv"):
        assert (first.folder / name).read_bytes() == (again.folder / name).read_bytes()
        assert (first.folder / name).read_bytes() != (other.folder / name).read_bytes()


def test_byzantine_rows_never_sit_in_a_fixed_position(plugin_dir):
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "defenses", "last_rows", """
        from benchmark.api import Defense
        def aggregate(gradients, f):
            return gradients[-f:].mean(dim=0)
        defense = Defense(name="last-rows", aggregate=aggregate)
    """)
    config = make_config(defense="last-rows", attack="empire:factor=100", n=11, f=2,
                         momentum_at="update", steps=30)
    sim = engine.Simulation(config)
    attack_picked = []
    for _ in range(30):
        row = sim.step()
        recovered = (abs(row["defense_norm"] - row["attack_norm"]) < 1e-5 * row["attack_norm"]
                     and row["cos_attack_defense"] > 0.9999)
        attack_picked.append(recovered)
    # Without the shuffle the last f rows would be the attack's at every step; with it, both
    # are Byzantine with probability 1/55 per step.
    assert sum(attack_picked) <= 5


def test_theta_distance_is_measured_where_the_gradients_were_taken():
    sim, _ = tiny_simulation("update")
    first, second = sim.step(), sim.step()
    assert first["theta_distance"] == 0
    assert second["theta_distance"] == pytest.approx(0.16 * 3 ** 0.5)  # θ_1 = -0.16 each
