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
from benchmark.config import PLACEMENTS
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


# --- the order of the tables, their titles ----------------------------------------------
# Mutations killed (mutmut on leaderboard/scores.py): grid values, placement or f left out
# of the order or compared as text, the placements' order replaced by their names', a
# placement outside PLACEMENTS not put last (or raising); the grid values, the f and n, or
# the trusted-server-data mark dropped from a title.

def labelled(defense, accuracy, seed=1, status="ok", share=None, **label):
    """A synthetic result with the label `label` (task, momentum_at, f, grid values)."""
    label = {"task": "t", "momentum_at": "worker", "f": 2, **label}
    label.update(defense=defense, attack=label.pop("attack", "x"), seed=seed, n=51)
    record = {"status": status, "config": {"defense": defense, "task": label["task"],
                                           "n": 51, "steps": 20},
              "summary": {} if share is None else {"condition_share": share}}
    folder = Path("/r", *(f"{key}={value}" for key, value in label.items()))
    return collect.Result(folder, record, label, [(0, 0.1), (18, accuracy), (20, accuracy)])


def test_tables_are_ordered_by_task_grid_value_placement_then_f_as_numbers():
    # the order wanted: placements as in PLACEMENTS (not by name), f as a number (5 < 12,
    # though "12" < "5"), a placement the benchmark does not know last
    placements = [*PLACEMENTS, "elsewhere"]
    assert sorted(PLACEMENTS) != list(PLACEMENTS)
    wanted = [(("task", task), ("lr", lr), ("momentum_at", placement), ("f", f))
              for task in ("a", "b") for lr in (0.1, 0.2) for placement in placements
              for f in (5, 12)]
    results = [labelled("rule", 0.5, task=task, lr=lr, momentum_at=placement, f=f)
               for (_, task), (_, lr), (_, placement), (_, f) in reversed(wanted)]
    built = scores.build(results, server_data=lambda defense: False)
    assert [dict(table.setting) for table in built.tables] == [dict(s) for s in wanted]
    assert [dict(summary.group) for summary in built.summaries] == \
        [{key: value for key, value in setting if key != "f"} for setting in wanted[::2]]
    assert all(summary.settings == 2 for summary in built.summaries)


def test_titles_name_the_setting_its_grid_values_and_the_server_data_section():
    results = [labelled(defense, 0.5, seed=seed, lr=0.1, batch=8)
               for defense in ("plain", "trusting") for seed in SEEDS]
    built = scores.build(results, server_data=lambda defense: defense == "trusting")
    (table,), (summary,) = built.tables, built.summaries
    assert table.title() == "t · momentum at worker · f = 2 of n = 51 · lr = 0.1 · batch = 8"
    assert summary.title() == "t · momentum at worker · lr = 0.1 · batch = 8"
    (apart,), (apart_summary,) = built.server_data.tables, built.server_data.summaries
    assert apart.server_data and apart_summary.server_data
    assert apart.title() == table.title() + " · trusted server data"
    assert apart_summary.title() == summary.title() + " · trusted server data"
    assert [row.defense for row in apart.rows] == ["trusting"]


# --- the condition column and a defense without attacked runs ---------------------------
# Mutations killed: the runs' condition shares not read (or their sum multiplied by their
# count instead of divided), a share where no run reports one; a defense run only without
# attack given an empty worst case ("") or no per-seed dict.

def test_the_condition_column_is_the_mean_share_over_the_settings_runs():
    results = [labelled("rule", 0.5, seed=seed, attack=attack, share=share)
               for (seed, attack), share in zip(
                   [(s, a) for a in ("x", "y") for s in SEEDS], [0.2, 0.4, 0.9, 0.1, 0.0, 0.8])]
    results += [labelled("silent", 0.5, seed=seed) for seed in SEEDS]
    (table,) = scores.build(results, server_data=lambda defense: False).tables
    rows = {row.defense: row for row in table.rows}
    assert rows["rule"].condition_share == pytest.approx(2.4 / 6)
    assert rows["silent"].condition_share is None


def test_a_defense_with_only_clean_runs_is_listed_unranked_and_has_no_worst_case():
    results = [labelled("clean-only", 0.9, seed=seed, attack="none") for seed in SEEDS]
    results += [labelled("attacked", 0.5 + 0.01 * seed, seed=seed) for seed in SEEDS]
    results += [labelled("attacked", 0.9, seed=seed, attack="none") for seed in SEEDS]
    built = scores.build(results, server_data=lambda defense: False)
    (table,), (summary,) = built.tables, built.summaries
    assert [row.defense for row in table.rows] == ["attacked", "clean-only"]
    row = table.rows[1]
    assert (row.rank, row.worst, row.worst_attack, row.attacks) == (None, None, None, {})
    assert row.per_seed == {}
    assert row.clean.mean == pytest.approx(0.9)
    assert table.rows[0].rank == 1
    assert {r.defense: (r.rank, r.covered) for r in summary.rows} == \
        {"attacked": (1, 1), "clean-only": (None, 0)}
    # a setting where no defense was attacked: a table with no ranks, and no gain
    alone = scores.build([labelled("clean-only", 0.9, seed=seed, attack="none", f=4)
                          for seed in SEEDS], server_data=lambda defense: False)
    (table,) = alone.tables
    assert [(row.defense, row.rank, row.worst, row.gain) for row in table.rows] == \
        [("clean-only", None, None, None)]


# --- run accuracy without evaluations in the last tenth ---------------------------------
# Mutations killed: a run without evaluations scoring 1; the fallback taking another
# evaluation than the last (or failing).

def test_a_run_whose_evaluations_stop_early_scores_its_last_one():
    early = labelled("rule", None)
    early.record["config"]["steps"] = 100
    early.evaluation_rows = [(0, 0.1), (10, 0.3), (20, 0.6)]   # none in steps 90..100
    assert scores.run_accuracy(early) == 0.6
    empty = labelled("rule", None)
    empty.evaluation_rows = []
    assert scores.run_accuracy(empty) == 0.0


# --- baselines, the server-data board, gains, the order of the summaries ----------------
# Mutations killed: the baseline runs dropped, mixed up across settings, or ending the
# reading of the results; the rules with server data kept in (or baselines kept out of)
# either board; the gain read when only one placement ran; summary rows sorted by name
# among equal ranks, or their number of settings dropped.

BASELINE = collect.BASELINE_ATTACK


def test_each_table_has_the_baseline_of_its_task_and_f_whatever_the_placement():
    results = [labelled("mean", value, seed=seed, attack=BASELINE, f=2)
               for seed, value in zip(SEEDS, (0.9, 0.8, 0.95))]
    results += [labelled("mean", 0.5, seed=seed, attack=BASELINE, f=4) for seed in SEEDS]
    results += [labelled(defense, 0.6, seed=seed, momentum_at=placement, f=f)
                for defense in ("plain", "trusting") for placement in ("update", "worker")
                for f in (2, 4, 6) for seed in SEEDS]
    built = scores.build(results, server_data=lambda defense: defense == "trusting")
    for board in (built, built.server_data):
        assert len(board.tables) == 6
        for table in board.tables:
            assert table.n == 51
            if table.values["f"] == 2:
                assert table.baseline.mean == pytest.approx((0.9 + 0.8 + 0.95) / 3)
                assert table.baseline.k == 3
            elif table.values["f"] == 4:
                assert (table.baseline.mean, table.baseline.k) == (0.5, 3)
            else:
                assert table.baseline is None
    assert {row.defense for t in built.tables for row in t.rows} == {"plain"}
    assert {row.defense for t in built.server_data.tables for row in t.rows} == {"trusting"}
    assert built.server_data.server_data is None


def test_the_gain_is_worker_minus_update_and_none_with_one_placement():
    results = [labelled("both", value, seed=seed, momentum_at=placement)
               for placement, value in (("update", 0.5), ("worker", 0.75)) for seed in SEEDS]
    results += [labelled("update-only", 0.5, seed=seed, momentum_at="update") for seed in SEEDS]
    results += [labelled("worker-only", 0.5, seed=seed, momentum_at="worker") for seed in SEEDS]
    built = scores.build(results, server_data=lambda defense: False)
    expected = {"both": 0.25, "update-only": None, "worker-only": None}
    assert [table.placement for table in built.tables] == ["update", "worker"]
    for table in built.tables:
        placed = {row.defense for row in table.rows}
        assert placed == {"both", f"{table.placement}-only"}
        assert {row.defense: row.gain for row in table.rows} == \
            {defense: expected[defense] for defense in placed}
    for summary in built.summaries:
        assert {row.defense: row.gain for row in summary.rows} == \
            {defense: expected[defense] for defense in {row.defense for row in summary.rows}}


def test_summary_rows_with_the_same_rank_are_listed_by_decreasing_score():
    # within seed noise of each other (one rank), "zeta" has the higher mean
    values = {"alpha": (0.80, 0.90, 0.70), "zeta": (0.92, 0.85, 0.75)}
    results = [labelled(defense, value, seed=seed, f=f) for f in (2, 4)
               for defense, by_seed in values.items() for seed, value in zip(SEEDS, by_seed)]
    built = scores.build(results, server_data=lambda defense: False)
    (summary,) = built.summaries
    assert summary.settings == 2
    assert [(row.defense, row.rank) for row in summary.rows] == [("zeta", 1), ("alpha", 1)]
    for table in built.tables:
        assert [(row.defense, row.rank) for row in table.rows] == [("zeta", 1), ("alpha", 1)]
