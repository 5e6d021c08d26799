"""Issue 22, tests with teeth: the leaderboard's worst case, the variance-norm condition at
its bound, and the sign of the `little` attack, each pinned a second, independent way.

Entry points: `leaderboard.scores.build` on `leaderboard.collect.Result`s, the
`benchmark.metrics` functions and `StepMetrics.row`, attack plugins through
`benchmark.registry`.
"""
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import registry
from benchmark.metrics import StepMetrics, condition_held, variance_norm_ratio
from leaderboard import collect, scores

SEEDS = (1, 2, 3)


def result(defense, attack, seed, accuracy, f=2):
    """A synthetic result whose run accuracy is `accuracy` (its last evaluations)."""
    record = {"status": "ok", "config": {"defense": defense, "task": "t", "n": 11, "steps": 20},
              "summary": {}}
    label = {"task": "t", "defense": defense, "attack": attack, "momentum_at": "worker",
             "f": f, "seed": seed, "n": 11}
    return collect.Result(Path(f"/r/{defense}/{attack}/{f}/{seed}"), record, label,
                          [(0, 0.1), (18, accuracy), (20, accuracy)])


def board(accuracies, f_values=(2,)):
    """accuracies: defense -> attack -> one accuracy per seed."""
    return scores.build([result(defense, attack, seed, value, f)
                         for f in f_values
                         for defense, by_attack in accuracies.items()
                         for attack, values in by_attack.items()
                         for seed, value in zip(SEEDS, values)])


# --- 3. the clean run never is the worst case -----------------------------------------
# Mutation killed: the worst case taken over every attack column, the clean run `none`
# included.

def test_a_clean_run_scoring_below_every_attack_is_not_the_worst_case():
    built = board({
        "fragile": {"none": [0.05, 0.04, 0.06], "x": [0.80, 0.82, 0.81], "y": [0.70, 0.72, 0.71]},
        "steady": {"none": [0.95, 0.96, 0.97], "x": [0.60, 0.61, 0.62], "y": [0.66, 0.65, 0.64]},
    }, f_values=(2, 4))
    for table in built.tables:
        rows = {row.defense: row for row in table.rows}
        assert table.attacks == ["x", "y"]
        assert rows["fragile"].worst_attack == "y"
        assert rows["fragile"].worst.mean == pytest.approx(0.71)
        assert rows["fragile"].per_seed == pytest.approx({1: 0.70, 2: 0.72, 3: 0.71})
        assert rows["fragile"].clean.mean == pytest.approx(0.05)
        assert "none" not in rows["fragile"].attacks
        assert rows["steady"].worst_attack == "x"
        assert [row.defense for row in table.rows] == ["fragile", "steady"]  # 0.71 > 0.61
    (summary,) = built.summaries
    score = {row.defense: row.score.mean for row in summary.rows}
    assert score == pytest.approx({"fragile": 0.71, "steady": 0.61})


# --- the worst case is the minimum ------------------------------------------------------
# Mutation killed: `min` replaced by `max` (or the first attack taken) in the worst case.

ACCURACY = st.integers(0, 64).map(lambda k: k / 64)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "none"]),
                       st.lists(ACCURACY, min_size=3, max_size=3), min_size=2))
def test_the_worst_case_is_the_lowest_attack_mean(by_attack):
    (table,) = board({"rule": by_attack}).tables
    (row,) = table.rows
    hostile = {attack: math.fsum(values) / 3 for attack, values in by_attack.items()
               if attack != "none"}
    if not hostile:
        assert row.worst is None and row.worst_attack is None
        return
    lowest = min(hostile.values())
    assert row.worst.mean == pytest.approx(lowest)
    assert hostile[row.worst_attack] == pytest.approx(lowest)
    assert all(row.worst.mean <= stat.mean + 1e-12 for stat in row.attacks.values())
    assert row.per_seed == pytest.approx(dict(zip(SEEDS, by_attack[row.worst_attack])))


# --- the variance-norm condition is a strict inequality -------------------------------
# Mutation killed: `ratio < bound²` relaxed to `ratio <= bound²`.

@settings(derandomize=True, max_examples=100)
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False))
def test_the_condition_fails_at_equality_and_holds_just_below(value):
    assert condition_held(value, value) == 0.0
    assert condition_held(math.nextafter(value, math.inf), value) == 0.0
    assert condition_held(math.nextafter(value, 0.0), value) == 1.0
    assert condition_held(value, math.nextafter(value, math.inf)) == 1.0


def test_a_step_whose_ratio_equals_the_bound_does_not_hold_it():
    # honest rows (0,0), (0,2), (0,4): mean (0,2), deviation² = (4 + 0 + 4) / 2 = 4,
    # norm² = 4: ratio exactly 1 = bound² with bound 1
    honest = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=torch.float64)

    def measured(bound):
        return StepMetrics(True, 0.9, 5, bound).row(
            step=0, lr=0.1, points=1, loss=1.0, theta_distance=0.0, sampled=honest,
            honest=honest, attack=honest[:0], defense=torch.zeros(2, dtype=torch.float64),
            byzantine_selected=math.nan)
    at_bound = measured(1.0)
    assert at_bound["honest_ratio"] == 1.0 == at_bound["bound_squared"]
    assert at_bound["condition_held"] == 0.0
    assert measured(1.0 + 1e-9)["condition_held"] == 1.0
    assert variance_norm_ratio(4.0, 4.0) == 1.0


# --- the sign of `little` ---------------------------------------------------------------
# Mutation killed: mean + factor·σ sent where mean − factor·σ is meant (and back).

def test_little_sends_the_mean_minus_its_factor_times_the_coordinate_std(generator):
    spec = registry.lookup("attack", "little").spec
    honest = torch.randn(9, 40, generator=generator, dtype=torch.float64) * 3 + 1
    mean, std = honest.mean(dim=0), honest.std(dim=0, unbiased=True)

    def never_called(rows):
        raise AssertionError("search=0 must not probe the defense")
    options = dict(spec.options)
    sent = spec.attack(honest, 3, never_called, **options)
    assert sent.shape == (3, 40)
    assert torch.allclose(sent, (mean - options["factor"] * std).expand(3, -1))
    assert (sent < mean).all()  # every coordinate pushed below the honest mean
    raised = spec.attack(honest, 2, never_called, **{**options, "negative": False, "factor": 2.0})
    assert torch.allclose(raised, (mean + 2.0 * std).expand(2, -1))
    assert (raised > mean).all()
