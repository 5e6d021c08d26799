"""`attack_jitter` (issue 19, no free fingerprints): Byzantine vectors that are never
bit-identical, so that a defense dropping exact twins gains nothing; off by default, where
every stored result keeps its hash."""
import pytest
import torch

from benchmark.api import UsageError
from benchmark.config import make_config
from benchmark.engine import Simulation
from benchmark.plugins import BoundAttack
from benchmark.stages.adversary import Adversary
from tests.plugin_fixtures import write_plugin

DEDUP = """
    import torch
    from benchmark.api import Defense

    def aggregate(gradients, f):
        twins = (gradients[:, None] == gradients[None]).all(dim=2).sum(dim=1) > 1
        return gradients[~twins].mean(dim=0) if (~twins).any() else gradients.mean(dim=0)

    defense = Defense(name="dedup", aggregate=aggregate)
"""


def settings(**extra):
    return dict(attack="little", steps=6, eval_every=6, profile="tiny") | extra


def byzantine_rows(**extra):
    simulation = Simulation(make_config(**settings(**extra)))
    honest = torch.randn(9, 50, generator=torch.Generator().manual_seed(0))
    return simulation.adversary.vectors(honest, simulation.defense, None), honest


def test_the_default_keeps_every_stored_configs_hash():
    assert make_config(**settings()).hash() == make_config(**settings(attack_jitter=0.0)).hash()
    assert make_config(**settings()).hash() != make_config(**settings(attack_jitter=1e-3)).hash()


def test_jittered_rows_differ_by_about_the_jitter_and_never_coincide():
    plain, _ = byzantine_rows()
    jittered, _ = byzantine_rows(attack_jitter=1e-3)
    assert torch.equal(plain[0], plain[1])  # little sends f identical rows
    assert not torch.equal(jittered[0], jittered[1])
    relative = (jittered - plain).norm(dim=1) / plain.norm(dim=1)
    assert ((relative > 0.5e-3) & (relative < 2e-3)).all()
    again, _ = byzantine_rows(attack_jitter=1e-3)
    assert torch.equal(again, jittered)  # from the run's seed


def test_a_non_finite_row_is_sent_as_the_attack_made_it():
    rows, _ = byzantine_rows(attack="inf", attack_jitter=1e-3)
    assert torch.isinf(rows).all()


def test_each_row_gets_noise_of_its_own_rms_coordinate_and_a_non_finite_row_none():
    """v + jitter · (‖v‖ / √d) · z, z standard normal from the jitter stream, row by row;
    a row with a non-finite entry as sent, while the other rows still get their noise."""
    rows = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 100.0, 0.0],
                         [1.0, float("inf"), 2.0, 3.0]])
    adversary = Adversary(BoundAttack("little", 3, torch.Generator()),
                          jitter=(0.1, torch.Generator().manual_seed(5)))
    jittered = adversary._jittered(rows)
    noise = torch.randn(rows.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(jittered[0], rows[0] + 0.1 * (5.0 / 2.0) * noise[0])
    assert torch.equal(jittered[1], rows[1] + 0.1 * (100.0 / 2.0) * noise[1])
    assert torch.equal(jittered[2], rows[2])


def final_rows(defense, **extra):
    simulation = Simulation(make_config(defense=defense, **settings(**extra)))
    return [simulation.step() for _ in range(6)]


def test_a_defense_that_drops_exact_twins_gains_nothing_from_jittered_attacks(plugin_dir):
    write_plugin(plugin_dir, "defenses", "dedup", DEDUP)
    # without jitter it finds the f identical Byzantine rows and averages the honest ones
    assert repr(final_rows("dedup")) != repr(final_rows("average"))
    jittered = dict(attack_jitter=1e-3)
    assert repr(final_rows("dedup", **jittered)) == repr(final_rows("average", **jittered))


@pytest.mark.parametrize("value", [-1e-3, float("nan"), float("inf")])
def test_a_negative_or_non_finite_jitter_is_refused(value):
    with pytest.raises(UsageError, match="attack_jitter must be a non-negative finite number"):
        make_config(**settings(attack_jitter=value))


def test_a_checkpoint_carries_the_jitter_stream():
    config = make_config(**settings(attack_jitter=1e-2))
    whole = Simulation(config)
    expected = [whole.step() for _ in range(6)]
    first = Simulation(config)
    rows = [first.step() for _ in range(3)]
    second = Simulation(config)
    second.load_state_dict(first.state_dict())
    rows += [second.step() for _ in range(3)]
    assert repr(rows) == repr(expected)
