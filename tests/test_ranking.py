"""The board's numbers on synthetic results: run accuracy, worst case, paired tests, Holm's
correction, ranks that never invert the means, and the per-placement summaries."""
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from leaderboard import collect, scores, statistics


def fake_result(defense, attack, seed, accuracy, status="ok", placement="worker", f=2,
                evaluations=None):
    record = {"status": status, "config": {"defense": defense, "task": "t", "n": 11,
                                           "steps": 100},
              "summary": {"condition_share": 0.5}}
    label = {"task": "t", "defense": defense, "attack": attack, "momentum_at": placement,
             "f": f, "seed": seed, "n": 11}
    rows = evaluations if evaluations is not None else [(0, 0.1), (90, accuracy),
                                                        (100, accuracy)]
    return collect.Result(Path(f"/x/{defense}/{attack}/{placement}/{f}/{seed}"), record, label,
                          rows)


def table_of(results):
    (table,) = scores.build(results).tables
    return table, {row.defense: row for row in table.rows}


# --- run accuracy and worst case --------------------------------------------------------

def test_run_accuracy_is_the_mean_of_the_last_tenth_of_the_steps():
    result = fake_result("a", "x", 1, None, evaluations=[(0, 0.1), (80, 0.5), (89, 0.6),
                                                        (90, 0.7), (95, 0.8), (100, 0.9)])
    assert scores.run_accuracy(result) == pytest.approx((0.7 + 0.8 + 0.9) / 3)
    assert scores.run_accuracy(fake_result("a", "x", 1, 0.9, status="diverged")) == 0.0
    assert scores.run_accuracy(fake_result("a", "x", 1, 0.9, status="failed")) == 0.0


def test_one_bad_final_evaluation_does_not_decide_a_run():
    result = fake_result("a", "x", 1, None, evaluations=[(0, 0.1), (90, 0.96), (100, 0.08)])
    assert scores.run_accuracy(result) == pytest.approx(0.52)


def test_worst_case_is_the_attack_with_the_lowest_mean_and_matches_its_column():
    results = [fake_result("a", "none", s, 0.95) for s in (1, 2, 3)]
    # x is worse on seed 1, y on seeds 2-3; y has the lower mean
    for seed, x, y in ((1, 0.50, 0.70), (2, 0.80, 0.60), (3, 0.80, 0.60)):
        results += [fake_result("a", "x", seed, x), fake_result("a", "y", seed, y)]
    table, rows = table_of(results)
    assert rows["a"].worst_attack == "y"
    assert rows["a"].worst == rows["a"].attacks["y"]
    assert rows["a"].per_seed == pytest.approx({1: 0.70, 2: 0.60, 3: 0.60})
    assert rows["a"].clean.mean == pytest.approx(0.95)
    assert table.attacks == ["x", "y"]


def test_the_clean_run_never_counts_as_the_worst_case():
    results = []
    for seed in (1, 2, 3):
        results += [fake_result("a", "none", seed, 0.10), fake_result("a", "x", seed, 0.90)]
    _, rows = table_of(results)
    assert rows["a"].worst_attack == "x" and rows["a"].worst.mean == pytest.approx(0.90)


def test_the_interval_is_the_95_percent_t_interval():
    stat = statistics.Stat.of([0.90, 0.92, 0.97])
    low, high = stats.t.interval(0.95, 2, loc=stat.mean, scale=stats.sem([0.90, 0.92, 0.97]))
    assert stat.half_width == pytest.approx((high - low) / 2)


# --- tests and ranks --------------------------------------------------------------------

def test_the_paired_p_value_is_scipys_paired_t_test():
    a, b = {1: 0.91, 2: 0.85, 3: 0.97, 4: 0.90}, {1: 0.90, 2: 0.80, 3: 0.95, 4: 0.91}
    expected = stats.ttest_rel(list(a.values()), list(b.values())).pvalue
    assert statistics.paired_p_value(a, b) == pytest.approx(expected)


def test_pairing_separates_a_consistent_gain_that_seed_noise_would_hide():
    base = {1: 0.60, 2: 0.90, 3: 0.70, 4: 0.80, 5: 0.65}
    better = {seed: value + 0.02 + 0.001 * seed for seed, value in base.items()}
    assert statistics.ranks({"better": better, "base": base}) == {"better": 1, "base": 2}


def test_defenses_within_seed_noise_share_a_rank():
    ranks = statistics.ranks({"a": {1: 0.90, 2: 0.80, 3: 0.95}, "b": {1: 0.85, 2: 0.84, 3: 0.93},
                              "c": {1: 0.10, 2: 0.11, 3: 0.12}})
    assert ranks == {"a": 1, "b": 1, "c": 3}


def test_fewer_than_three_seeds_separate_nobody():
    assert statistics.ranks({"a": {1: 0.9, 2: 0.9}, "b": {1: 0.1, 2: 0.1}}) == {"a": 1, "b": 1}


def test_holm_steps_down_and_stops_at_the_first_acceptance():
    assert statistics.holm_rejections({"a": 0.01, "b": 0.02, "c": 0.03}) == {"a", "b", "c"}
    assert statistics.holm_rejections({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a"}
    assert statistics.holm_rejections({"a": 0.02, "b": 0.001}) == {"a", "b"}
    assert statistics.holm_rejections({"a": 0.03, "b": 0.04}) == set()


# accuracies are counts of test images over the test set's size: multiples of 1/1000 here
# (arbitrary floats reach underflow, where two means differ by less than one ulp)
seed_values = st.lists(st.integers(0, 1000).map(lambda k: k / 1000), min_size=5, max_size=5)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(seed_values, min_size=2, max_size=6))
def test_a_lower_mean_never_ranks_above_a_higher_one(columns):
    per_seed = {f"d{i}": dict(enumerate(values, 1)) for i, values in enumerate(columns)}
    ranks = statistics.ranks(per_seed)
    means = {name: sum(v.values()) / 5 for name, v in per_seed.items()}
    for a in per_seed:
        for b in per_seed:
            if means[a] > means[b]:
                assert ranks[a] <= ranks[b]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(seed_values, seed_values)
def test_two_defenses_tie_exactly_when_the_paired_test_does_not_reject(a, b):
    first, second = dict(enumerate(a, 1)), dict(enumerate(b, 1))
    ranks = statistics.ranks({"first": first, "second": second})
    differences = [x - y for x, y in zip(a, b)]
    if len(set(differences)) == 1:
        rejects = differences[0] != 0
    else:
        p_value = stats.ttest_rel(a, b).pvalue
        assume(abs(p_value - statistics.ALPHA) > 1e-9)  # two float paths may round apart
        rejects = p_value < statistics.ALPHA
    assert (ranks["first"] != ranks["second"]) == rejects


# --- tables and summaries ---------------------------------------------------------------

def test_tables_sort_by_mean_and_failed_runs_score_zero():
    results = []
    for seed in (1, 2, 3):
        results += [fake_result("low", "x", seed, 0.5 + 0.01 * seed),
                    fake_result("high", "x", seed, 0.9 + 0.01 * seed),
                    fake_result("broken", "x", seed, 0.99, status="diverged" if seed == 2
                                else "ok")]
    table, rows = table_of(results)
    assert [row.defense for row in table.rows] == ["high", "broken", "low"]
    assert rows["broken"].per_seed[2] == 0.0 and rows["broken"].failed == 1


def test_summaries_rank_per_placement_only_defenses_ranked_at_every_f():
    results = []
    for placement, level in (("update", 0.5), ("worker", 0.7)):
        for seed in (1, 2, 3):
            for f in (1, 2):
                results.append(fake_result("full", "x", seed, level + 0.01 * seed,
                                           placement=placement, f=f))
            results.append(fake_result("partial", "x", seed, 0.99, placement=placement, f=1))
    board = scores.build(results)
    assert board.settings == 4
    assert [summary.title() for summary in board.summaries] == [
        "t · momentum at update", "t · momentum at worker"]
    update, worker = ({row.defense: row for row in s.rows} for s in board.summaries)
    assert update["full"].rank == 1 and update["full"].covered == 2
    assert update["full"].score.mean == pytest.approx(0.52)
    assert update["partial"].rank is None and update["partial"].score is None
    assert update["partial"].covered == 1
    assert worker["full"].gain == pytest.approx(0.2)
