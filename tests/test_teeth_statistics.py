"""Issue 22, tests with teeth: the statistics behind the ranks (leaderboard.statistics),
pinned where the mutation run of that module found them loose: the seeds two defenses
share, the p-value's edge cases (too few seeds, identical differences) and what they do to
Holm's correction, and ties in the mean.

Entry points: `statistics.paired_p_value`, `statistics.holm_rejections`,
`statistics.ranks` and `statistics.Stat`, the module's public functions.
"""
import math

import pytest
from scipy import stats

from leaderboard import statistics

# Dyadic values (multiples of 1/8): their differences and means are exact in binary
# floating point, so "identical differences on every seed" and "equal means" are exact.
BASE = {1: 0.500, 2: 0.625, 3: 0.750, 4: 0.375}


def shifted(values, offset):
    return {seed: value + offset for seed, value in values.items()}


# --- the seeds two defenses share -------------------------------------------------------
# Mutation killed: the union of the seeds instead of their intersection.

def test_the_p_value_uses_only_the_seeds_both_share():
    a = {1: 0.91, 2: 0.85, 3: 0.97, 4: 0.90, 5: 0.40}      # seed 5: a's only
    b = {1: 0.90, 2: 0.80, 3: 0.95, 4: 0.91, 6: 0.99}      # seed 6: b's only
    shared = (1, 2, 3, 4)
    expected = stats.ttest_rel([a[s] for s in shared], [b[s] for s in shared]).pvalue
    assert statistics.paired_p_value(a, b) == pytest.approx(expected)
    assert statistics.paired_p_value(b, a) == pytest.approx(expected)


def test_defenses_with_different_seeds_are_ranked_on_the_shared_ones():
    low = {1: 0.50, 2: 0.60, 3: 0.70, 4: 0.55}
    high = {seed: value + 0.02 + 0.001 * seed for seed, value in low.items() if seed != 4}
    high[7] = 0.99
    assert statistics.ranks({"low": low, "high": high}) == {"high": 1, "low": 2}


# --- too few shared seeds ---------------------------------------------------------------
# Mutations killed: a p-value of 2 (not a probability) below MIN_SEEDS shared seeds; the
# threshold moved by one seed.

def test_fewer_than_three_shared_seeds_give_a_p_value_of_exactly_one():
    a = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}
    b = {1: 0.1, 2: 0.2, 5: 0.3, 6: 0.4}                   # two seeds in common
    assert statistics.MIN_SEEDS == 3
    assert statistics.paired_p_value(a, b) == 1.0
    assert statistics.paired_p_value({}, {}) == 1.0


def test_three_shared_seeds_are_enough_for_a_test():
    a, b = {1: 0.91, 2: 0.85, 3: 0.97}, {1: 0.50, 2: 0.52, 3: 0.49}
    expected = stats.ttest_rel(list(a.values()), list(b.values())).pvalue
    assert expected < statistics.ALPHA
    assert statistics.paired_p_value(a, b) == pytest.approx(expected)
    assert statistics.ranks({"a": a, "b": b}) == {"a": 1, "b": 2}


# --- identical differences on every seed ------------------------------------------------
# Mutations killed: the zero-variance branch answering 0 for equal runs, 1 for a constant
# gain, 2, or its test inverted.

def test_equal_runs_give_one_and_a_constant_gain_gives_zero():
    assert statistics.paired_p_value(BASE, dict(BASE)) == 1.0
    for offset in (0.125, -0.125):
        assert statistics.paired_p_value(shifted(BASE, offset), BASE) == 0.0
        assert statistics.paired_p_value(BASE, shifted(BASE, offset)) == 0.0


def test_a_constant_gain_on_every_seed_is_significant():
    ranks = statistics.ranks({"base": BASE, "better": shifted(BASE, 0.125)})
    assert ranks == {"better": 1, "base": 2}


def test_an_identical_twin_does_not_loosen_holms_correction():
    # x and its twin y score the same on every seed; z is better, with a p-value between
    # alpha / 2 and alpha against each. Were the twins' comparison (p = 1) counted as a
    # rejection, Holm would test z at alpha instead of alpha / 2 and call it better.
    x = {1: 0.50, 2: 0.60, 3: 0.70, 4: 0.80}
    z = {1: 0.52, 2: 0.65, 3: 0.71, 4: 0.84}
    p = stats.ttest_rel(list(z.values()), list(x.values())).pvalue
    assert statistics.ALPHA / 2 < p < statistics.ALPHA
    assert statistics.paired_p_value(x, dict(x)) == 1.0
    assert statistics.ranks({"x": x, "y": dict(x), "z": z}) == {"x": 1, "y": 1, "z": 1}
    assert statistics.ranks({"x": x, "z": z}) == {"z": 1, "x": 2}  # alone, z is better


# --- equal means ------------------------------------------------------------------------
# Mutation killed: "significantly better" allowing an equal mean.

def test_an_equal_mean_is_never_significantly_better():
    # On the three seeds both have, `other` is 1/8 above `mine` on each (p = 0); its fourth
    # seed brings its mean down to exactly mine.
    mine = {1: 0.500, 2: 0.625, 3: 0.750}
    other = {**shifted(mine, 0.125), 4: 0.25}
    assert statistics.Stat.of(list(other.values())).mean == \
        statistics.Stat.of(list(mine.values())).mean
    assert statistics.paired_p_value(other, mine) == 0.0
    assert statistics.ranks({"mine": mine, "other": other}) == {"mine": 1, "other": 1}


# --- one and two seeds ------------------------------------------------------------------
# Mutations killed: the standard deviation of one value computed (a division by zero), or
# that of two values left undefined.

def test_one_seed_has_a_mean_and_no_spread():
    stat = statistics.Stat.of([0.75])
    assert (stat.mean, stat.k) == (0.75, 1)
    assert math.isnan(stat.std) and math.isnan(stat.half_width)


def test_two_seeds_have_the_sample_standard_deviation():
    stat = statistics.Stat.of([0.5, 0.75])
    assert stat.std == pytest.approx(stats.tstd([0.5, 0.75]))
    low, high = stats.t.interval(0.95, 1, loc=stat.mean, scale=stats.sem([0.5, 0.75]))
    assert stat.half_width == pytest.approx((high - low) / 2)


# --- Holm's correction ------------------------------------------------------------------
# Mutations killed: the hypotheses taken in the order of their names instead of their
# p-values; a p-value equal to its threshold accepted.

def test_holm_takes_the_smallest_p_value_first_whatever_its_name():
    # by name, "a" (0.04 > alpha / 2) would stop the procedure before "b" is looked at
    assert statistics.holm_rejections({"a": 0.04, "b": 0.001}) == {"a", "b"}
    assert statistics.holm_rejections({"b": 0.001, "a": 0.04}) == {"a", "b"}
    assert statistics.holm_rejections({"a": 0.04, "b": 0.001, "c": 0.03}) == {"b"}


def test_holm_rejects_a_p_value_equal_to_its_threshold():
    alpha = statistics.ALPHA
    assert statistics.holm_rejections({"a": alpha / 2, "b": alpha}) == {"a", "b"}
    assert statistics.holm_rejections({"a": alpha / 3, "b": alpha / 2, "c": alpha}) == \
        {"a", "b", "c"}
    # the level passed in, not ALPHA: here a's threshold is alpha / 4, b's alpha / 2
    assert statistics.holm_rejections({"a": alpha / 4, "b": alpha}, alpha=alpha / 2) == {"a"}
