"""Partial participation (issue #20): a seeded random subset of the workers each step."""
import pytest
import torch

from benchmark import engine
from benchmark.api import UsageError
from benchmark.config import make_config
from benchmark.stages.participation import Participation


def config(**overrides):
    settings = dict(task="digits", defense="median", attack="little", n=11, f=3,
                    participants=7, steps=6, eval_every=6, batch_size=8, seed=1)
    return make_config(**(settings | overrides))


def run(cfg, steps):
    simulation = engine.Simulation(cfg)
    seen = []
    aggregate = simulation._aggregate

    def spy(shuffled, byzantine):
        seen.append((len(shuffled.matrix), len(byzantine), simulation.defense.f))
        return aggregate(shuffled, byzantine)

    simulation._aggregate = spy
    for _ in range(steps):
        simulation.step()
    return simulation, seen


def test_existing_streams_keep_their_seeds():
    old = ("model", "data", "shuffle", "defense", "attack", "servers", "server_attack",
           "model_rules")
    assert engine.STREAMS[:len(old)] == old  # new streams are appended, never inserted


def test_default_is_everyone_and_keeps_the_hash():
    plain = make_config(task="digits", defense="median", attack="little", n=11, f=3)
    assert plain.participants is None
    assert plain.hash() == make_config(task="digits", defense="median", attack="little",
                                       n=11, f=3, participants=None).hash()
    assert plain.hash() != config(steps=plain.steps, eval_every=plain.eval_every,
                                  batch_size=plain.batch_size).hash()
    assert engine.Simulation(plain).participation is None


def test_each_step_m_rows_a_varying_byzantine_count_and_the_declared_f():
    _, seen = run(config(steps=12), 12)
    assert all(rows == 7 and f == 3 for rows, _, f in seen)
    counts = {byzantine for _, byzantine, _ in seen}
    assert len(counts) > 1 and counts <= {0, 1, 2, 3}


def test_participation_is_deterministic_per_seed():
    first, seen = run(config(), 6)
    again, seen_again = run(config(), 6)
    other, seen_other = run(config(seed=2), 6)
    assert seen == seen_again and torch.equal(first.theta, again.theta)
    assert not torch.equal(first.theta, other.theta)


def test_draws_cover_honest_and_byzantine_workers():
    participation = Participation(11, 7, torch.Generator().manual_seed(0))
    draws = [participation.draw(8) for _ in range(50)]
    assert all(len(d.honest) + len(d.byzantine) == 7 for d in draws)
    assert all(bool((d.byzantine < 3).all()) and bool((d.honest < 8).all()) for d in draws)
    assert len({len(d.byzantine) for d in draws}) > 1


def test_data_level_and_clean_attacks_take_part():
    run(config(attack="labelflip", steps=3), 3)
    _, seen = run(config(attack="none", steps=3), 3)
    assert all(byzantine == 0 and rows == 7 for rows, byzantine, _ in seen)


def test_resume_from_a_checkpoint_draws_the_same_participants():
    whole, _ = run(config(), 6)
    first, _ = run(config(), 3)
    resumed = engine.Simulation(config())
    resumed.load_state_dict(first.state_dict())
    for _ in range(3):
        resumed.step()
    assert torch.equal(resumed.theta, whole.theta)


@pytest.mark.parametrize("bad", [0, 3, 12])
def test_participants_out_of_range_is_refused(bad):
    with pytest.raises(UsageError, match="participants"):
        config(participants=bad)


def test_cli_refuses_before_writing(tmp_path):
    import subprocess
    import sys
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "benchmark", "cell", "--task", "digits",
                           "--defense", "median", "--attack", "little", "--n", "11", "--f", "3",
                           "--participants", "2", "--results", str(results)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "participants" in done.stderr
    assert not results.exists()


def test_participants_is_a_profile_axis():
    from benchmark.matrix import Profile, expand
    profile = Profile(name="adhoc", description="", tasks=["digits"], attacks=["little"],
                      placements=["worker"], seeds=[1], f=[3], settings={"n": 11},
                      grid={"participants": [5, 11]})
    cells = expand(profile, "median")
    assert sorted(c.config.participants for c in cells) == [5, 11]


def test_a_rule_is_checked_against_the_rows_it_gets_per_step():
    """Krum needs n >= 2f+3 = 9 rows at f = 3: 11 workers pass, 7 participants do not,
    and the matrix marks that cell invalid instead of failing it at its first step."""
    from benchmark.matrix import Profile, expand
    from benchmark.plugins import check_config
    check_config(config(defense="krum", participants=None))
    with pytest.raises(UsageError, match=r"krum needs n >= 2f\+3 = 9"):
        check_config(config(defense="krum", participants=7))
    profile = Profile(name="adhoc", description="", tasks=["digits"], attacks=["little"],
                      placements=["worker"], seeds=[1], f=[3], settings={"n": 11},
                      grid={"participants": [7, 9]})
    cells = {c.config.participants: c.invalid for c in expand(profile, "krum")}
    assert cells[9] is None and "2f+3" in cells[7]
