"""Teeth for the defense library (issue 22): what the reference comparisons of
tests/test_defenses.py left open when defenses/ was mutated (docs/mutation-testing.md).
Those comparisons use unstructured Gaussian rows with default options and one call; here
the rows look like a step under attack, the options move off their defaults, stateful
rules are called several times, and every `check` is held to its boundaries.
"""
import math

import pytest
import torch

from benchmark.api import Aggregated
from tests.defense_references import (
    ref_bucketing,
    ref_clip,
    ref_fltrust,
    rows_of,
    trusted_gradient,
)
from tests.defense_references_filters import (
    ref_clippedclustering,
    ref_dnc,
    ref_foolsgold,
    ref_signguard,
)
from tests.test_defenses import NAMES, RULES, assert_close, min_n, run, spec

INF = math.inf


def attacked(n, f, d, seed, byzantine):
    """n rows in a random order: n - f honest ones around a common direction, and f
    Byzantine ones that are `identical` (one vector opposite the direction), `scattered`
    around that vector, or `large` (norm about 50 times the honest rows')."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g, dtype=torch.float64)
    honest = direction + 0.3 * torch.randn(n - f, d, generator=g, dtype=torch.float64)
    if byzantine == "identical":
        bad = (-3 * direction).expand(f, d)
    elif byzantine == "scattered":
        bad = -3 * direction + torch.randn(f, d, generator=g, dtype=torch.float64)
    else:
        bad = 50 * torch.randn(f, d, generator=g, dtype=torch.float64)
    rows = torch.cat([honest, bad])
    return rows[torch.randperm(n, generator=g)].contiguous()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("byzantine", ["identical", "scattered", "large"])
@pytest.mark.parametrize("f, extra_n", [(1, 1), (2, 0), (3, 2)])
def test_rule_agrees_with_its_reference_under_attack(name, byzantine, f, extra_n):
    n = min_n(name, f) + extra_n + (2 if name in ("average", "bucketing", "fltrust") else 0)
    x = attacked(n, f, 5, seed=100 * f + n, byzantine=byzantine)
    assert_close(run(name, x, f), RULES[name].reference(rows_of(x), f), name)


# --- options off their defaults, against the reference with the same options -------

OPTIONS = [
    ("dnc", {"b": 2, "niters": 3}, lambda rows, f: ref_dnc(rows, f, niters=3, b=2)),
    ("dnc", {"b": 3, "niters": 1, "c": 1.5}, lambda rows, f: ref_dnc(rows, f, 1.5, 1, 3)),
    ("dnc", {"c": 0.0}, lambda rows, f: ref_dnc(rows, f, c=0.0)),
    ("bucketing", {"s": 3}, lambda rows, f: ref_bucketing(rows, f, s=3)),
    ("clip", {"tau": 0.5}, lambda rows, f: ref_clip(rows, f, tau=0.5)),
    ("foolsgold", {"kappa": 2.0}, lambda rows, f: ref_foolsgold(rows, f, kappa=2.0)),
    ("foolsgold", {"kappa": 0.25}, lambda rows, f: ref_foolsgold(rows, f, kappa=0.25)),
    ("signguard", {"fraction": 1.0}, lambda rows, f: ref_signguard(rows, f, fraction=1.0)),
    ("signguard", {"fraction": 0.5, "quantile": 0.3},
     lambda rows, f: ref_signguard(rows, f, fraction=0.5, quantile=0.3)),
    ("signguard", {"L": 0.8, "R": 1.2, "fraction": 1.0},
     lambda rows, f: ref_signguard(rows, f, L=0.8, R=1.2, fraction=1.0)),
    ("clippedclustering", {"history": False},
     lambda rows, f: ref_clippedclustering(rows, f, history=False)),
]


@pytest.mark.parametrize("name, options, reference", OPTIONS,
                         ids=[f"{name}-{options}" for name, options, _ in OPTIONS])
@pytest.mark.parametrize("byzantine", ["identical", "scattered", "large"])
def test_options_move_the_rule_as_they_move_its_reference(name, options, reference, byzantine):
    f = 2
    x = attacked(min_n(name, f) + 3, f, 5, seed=7, byzantine=byzantine)
    assert_close(run(name, x, f, **options), reference(rows_of(x), f), f"{name} {options}")


# --- state carried from call to call ------------------------------------------------

def calls(name, inputs, f, **options):
    """The rule's outputs on `inputs`, one call each, with one state throughout."""
    defense, state, outputs = spec(name), {}, []
    for x in inputs:
        result = defense.aggregate(x, f, **{**defense.options, **options}, state=state)
        outputs.append(result.vector if isinstance(result, Aggregated) else result)
    return outputs


def test_clippedclustering_clips_to_the_median_of_every_norm_seen_so_far():
    steps = [attacked(9, 2, 5, seed=s, byzantine="large") * scale
             for s, scale in ((1, 1.0), (2, 10.0), (3, 0.1))]
    past = []
    for x, result in zip(steps, calls("clippedclustering", steps, 2)):
        assert_close(result, ref_clippedclustering(rows_of(x), 2, past=past), "step")
        past += [float(v) for v in torch.linalg.vector_norm(x, dim=1)]
    without = calls("clippedclustering", steps, 2, history=False)
    assert_close(without[2], ref_clippedclustering(rows_of(steps[2]), 2, history=False), "off")
    assert not torch.allclose(without[2], calls("clippedclustering", steps, 2)[2])


def test_clippedclustering_history_leaves_non_finite_rows_out():
    first = attacked(9, 2, 5, seed=4, byzantine="scattered")
    first[3] = math.nan
    second = attacked(9, 2, 5, seed=5, byzantine="scattered") * 4
    past = [float(v) for i, v in enumerate(torch.linalg.vector_norm(first, dim=1)) if i != 3]
    assert_close(calls("clippedclustering", [first, second], 2)[1],
                 ref_clippedclustering(rows_of(second), 2, past=past), "history")


def test_clippedclustering_keeps_the_tighter_of_two_equal_clusters_and_reports_it():
    tight = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [1.0, 0.0, 0.05]],
                         dtype=torch.float64)
    loose = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.6], [0.0, 1.0, -0.6]],
                         dtype=torch.float64)
    for x, tight_rows in ((torch.cat([tight, loose]), [0, 1, 2]),
                          (torch.cat([loose, tight]), [3, 4, 5])):
        result = spec("clippedclustering").aggregate(x, 1, history=False, state={})
        assert sorted(result.selected.tolist()) == tight_rows
        assert_close(result.vector, ref_clippedclustering(rows_of(x), 1, history=False), "tie")


# --- FoolsGold on the rows that make its weights degenerate -------------------------

@pytest.mark.parametrize("case", ["zero row", "opposite rows", "sybils", "non-finite",
                                  "all sybils", "short rows", "contrarian"])
def test_foolsgold_on_degenerate_rows(case):
    # dissimilar rows (FoolsGold gives similar rows, as honest IID ones are, weight 0)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    if case == "zero row":
        x[2] = 0.0
    elif case == "opposite rows":
        x[5] = -x[1]
    elif case == "sybils":
        x[4:7] = x[4]
    elif case == "non-finite":
        x[0, 1], x[6] = math.nan, INF
    elif case == "short rows":  # norms under 1: their products of squared norms too
        x = x / 10
    elif case == "contrarian":  # row 7's cosine with every other row is negative
        x = x.abs()
        x[7] = -1.0
    else:
        x[:] = x[0]
    result = run("foolsgold", x, 2)
    assert_close(result, ref_foolsgold(rows_of(x), 2), case)
    assert result.shape == (5,) and (case == "all sybils") == bool((result == 0).all())


# --- every `check` at its boundaries, with the message that names the fix -----------

CHECKS = [  # (defense, n, f, options, None or words the refusal must contain)
    ("dnc", 5, 2, {"c": 0.0, "niters": 1, "b": 1}, None),
    ("dnc", 5, 2, {"c": -0.5, "niters": 1, "b": 1}, "c must be >= 0"),
    ("dnc", 5, 2, {"c": math.nan, "niters": 5, "b": 10}, "got c=nan, niters=5, b=10"),
    ("dnc", 5, 2, {"c": INF, "niters": 5, "b": 10}, "c must be >= 0"),
    ("dnc", 5, 2, {"c": 1.0, "niters": 0, "b": 10}, "niters >= 1"),
    ("dnc", 5, 2, {"c": 1.0, "niters": 5, "b": 0}, "b >= 1"),
    ("dnc", 4, 2, {"c": 1.5, "niters": 5, "b": 10}, None),   # floor(3.0) = 3 < 4
    ("dnc", 3, 2, {"c": 1.5, "niters": 5, "b": 10}, "dnc needs n > floor(c·f)"),
    ("dnc", 3, 2, {"c": 1.4, "niters": 5, "b": 10}, None),   # floor(2.8) = 2 < 3
    ("clip", 2, 2, {"tau": 0.5}, None),                      # a fixed tau: any n
    ("clip", 5, 2, {"tau": None}, None),
    ("clip", 4, 2, {"tau": None}, "clip (median norm) needs n >= 2f+1 = 5"),
    ("clip", 5, 2, {"tau": 0.0}, "tau must be a positive number"),
    ("clip", 5, 2, {"tau": -1.0}, "not -1.0"),
    ("clip", 5, 2, {"tau": INF}, "tau must be a positive number"),
    ("clip", 5, 2, {"tau": "2"}, "not '2'"),
    ("signguard", 5, 1, {"L": 0.0, "R": 1.0, "fraction": 0.1, "quantile": 1.0}, None),
    ("signguard", 5, 1, {"L": 1.0, "R": 1.0, "fraction": 0.1, "quantile": 0.5}, None),
    ("signguard", 5, 1, {"L": -0.1, "R": 3.0, "fraction": 0.1, "quantile": 0.5},
     "the norm bounds must satisfy 0 <= L <= 1 <= R (got L=-0.1, R=3.0)"),
    ("signguard", 5, 1, {"L": 1.1, "R": 3.0, "fraction": 0.1, "quantile": 0.5}, "L=1.1"),
    ("signguard", 5, 1, {"L": 0.1, "R": 0.9, "fraction": 0.1, "quantile": 0.5}, "R=0.9"),
    ("signguard", 5, 1, {"L": 0.1, "R": 3.0, "fraction": 0.0, "quantile": 0.5},
     "fraction must be > 0 and quantile in (0, 1] (got 0.0, 0.5)"),
    ("signguard", 5, 1, {"L": 0.1, "R": 3.0, "fraction": 0.1, "quantile": 0.0}, "(got 0.1, 0.0)"),
    ("signguard", 5, 1, {"L": 0.1, "R": 3.0, "fraction": 0.1, "quantile": 1.5}, "quantile in"),
    ("geomed", 5, 1, {"iterations": 0, "tolerance": 0.0, "nu": 1e-9}, None),
    ("geomed", 5, 1, {"iterations": -1, "tolerance": 0.0, "nu": 1.0},
     "iterations and tolerance must be >= 0 and nu > 0"),
    ("geomed", 5, 1, {"iterations": 1, "tolerance": -1e-9, "nu": 1.0}, "tolerance must be"),
    ("geomed", 5, 1, {"iterations": 1, "tolerance": 0.0, "nu": 0.0}, "nu > 0"),
    ("cclip", 5, 1, {"tau": 1e-9, "iterations": 1}, None),
    ("cclip", 5, 1, {"tau": 0.0, "iterations": 1}, "tau must be > 0 and iterations >= 1 "
                                                  "(got tau=0.0, iterations=1)"),
    ("cclip", 5, 1, {"tau": 10.0, "iterations": 0}, "iterations=0"),
    ("bucketing", 5, 1, {"s": 1}, None),
    ("bucketing", 5, 1, {"s": 0}, "bucket size s must be >= 1, not 0"),
    ("smea", 51, 2, {"max_subsets": 1275}, None),            # C(51, 2) = 1,275
    ("smea", 51, 2, {"max_subsets": 1274},
     "smea enumerates C(n, f) = C(51, 2) = 1,275 subsets, more than max_subsets=1,274; "
     "lower f, raise smea:max_subsets=..., or use caf"),
    ("monna", 5, 1, {"pivot": "previous"}, None),
    ("monna", 5, 1, {"pivot": "median"}, None),
    ("monna", 5, 1, {"pivot": "mean"}, "pivot must be 'previous' (the last aggregate) or "
                                       "'median', not 'mean'"),
    ("foolsgold", 5, 1, {"kappa": 1e-9}, None),
    ("foolsgold", 5, 1, {"kappa": 0.0}, "kappa must be a positive number, not 0.0"),
    ("foolsgold", 5, 1, {"kappa": INF}, "not inf"),
    ("bulyan", 7, 1, {"variant": "iclr21"}, None),
    ("bulyan", 7, 1, {"variant": "el-mhamdi"}, None),
    ("bulyan", 7, 1, {"variant": "other"},
     "variant must be 'el-mhamdi' (the paper) or 'iclr21' (the ICLR'21 harness)"),
]


@pytest.mark.parametrize("name, n, f, options, refusal", CHECKS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CHECKS])
def test_check_accepts_and_refuses_at_the_boundaries(name, n, f, options, refusal):
    reason = spec(name).check(n, f, **options)
    if refusal is None:
        assert reason is None, reason
    else:
        assert isinstance(reason, str) and refusal in reason, reason
        # it opens on what is wrong: an option, the rule, or "the"/"bucket" + an option
        assert reason.split()[0] in {*options, name, "the", "bucket"}, reason


# --- FLTrust's edge cases -----------------------------------------------------------

def fltrust(x, server):
    return spec("fltrust").aggregate(x, 1, server_gradient=server)


@pytest.mark.parametrize("server", [[0.0] * 4, [math.nan, 1.0, 0.0, 0.0], [0.3, 0.0, 0.4, 0.0]])
def test_fltrust_trusts_nobody_only_when_the_server_gradient_has_no_direction(server):
    x = attacked(6, 1, 4, seed=3, byzantine="scattered")
    server = torch.tensor(server, dtype=torch.float64)
    result = fltrust(x, server)
    if torch.isfinite(server).all() and server.norm() > 0:  # norm 0.5: a direction still
        assert_close(result.vector, ref_fltrust(rows_of(x), 1, server.tolist()), "fltrust")
        assert len(result.selected) > 0
    else:
        assert torch.equal(result.vector, torch.zeros(4, dtype=torch.float64))
        assert result.selected.dtype == torch.long and len(result.selected) == 0


def test_fltrust_gives_no_trust_to_zero_or_non_finite_rows():
    x = attacked(7, 1, 4, seed=5, byzantine="scattered")
    x[1], x[4, 2], x[5] = 0.0, math.nan, math.inf
    server = torch.tensor(trusted_gradient(4), dtype=torch.float64)
    result = fltrust(x, server)
    assert torch.isfinite(result.vector).all()
    assert_close(result.vector, ref_fltrust(rows_of(x), 1), "fltrust")
    assert not {1, 4, 5} & set(result.selected.tolist())


def test_fltrust_measures_rows_that_overflow_float32_again_in_float64():
    server = torch.tensor(trusted_gradient(4), dtype=torch.float64)
    x = attacked(5, 1, 4, seed=7, byzantine="scattered").to(torch.float32)
    x[2] = torch.tensor(trusted_gradient(4), dtype=torch.float32) * 1e30  # norm² overflows
    x[4] = torch.tensor([3.0, -1.0, 0.5, 2.0]) * 2e28  # a second one, of another norm
    result = fltrust(x, server)
    expected = ref_fltrust(rows_of(x.to(torch.float64)), 1)
    torch.testing.assert_close(result.vector.to(torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert {2, 4} <= set(result.selected.tolist())


# --- small pieces: where a row's own distance, a NaN vote or a tied vote decides ----

def test_nnm_counts_each_row_first_among_its_nearest_even_when_others_are_closer_than_one():
    x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [5.0]], dtype=torch.float64)
    result = run("nnm", x, 3)  # each row: itself and its nearest other row
    expected = torch.tensor([[0.05], [0.05], [0.15], [0.25], [2.65]], dtype=torch.float64)
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


def test_signsgd_nan_entries_abstain_and_a_tie_gives_zero():
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [math.nan, -1.0], [0.0, 1.0]],
                     dtype=torch.float64)
    result = run("signsgd", x, 1, scale=0.5)
    assert result.tolist() == [0.0, 0.5]


@pytest.mark.parametrize("n, f, bad_rows", [(7, 0, 0), (5, 1, 2)])
def test_caf_with_nothing_to_filter_is_the_mean_of_the_finite_rows(n, f, bad_rows):
    """f = 0, or n - 2f finite rows: the total weight starts at n - 2f, so the filtering
    loop never runs."""
    x = attacked(n, 1, 5, seed=11, byzantine="scattered")
    x[:bad_rows] = math.nan
    torch.testing.assert_close(run("caf", x, f), x[bad_rows:].mean(dim=0),
                               rtol=1e-12, atol=1e-12)


def test_clip_to_a_fixed_tau_is_exact_in_float64():
    x = attacked(5, 1, 5, seed=13, byzantine="large")
    clipped = run("clip", x, 1, tau=0.1)
    assert (torch.linalg.vector_norm(clipped, dim=1) - 0.1).abs().max() < 1e-15


def test_mda_bound_and_refusal():
    from defenses import mda
    assert mda.upper_bound(11, 0, 5) == INF
    assert mda.upper_bound(11, 1, 5) == pytest.approx(10 / math.sqrt(8))
    assert mda.upper_bound(11, 2, 5) == pytest.approx(9 / (2 * math.sqrt(8)))
    x = attacked(7, 2, 5, seed=17, byzantine="scattered")
    x[:3] = math.nan  # more non-finite rows than f
    with pytest.raises(ValueError, match="more than f = 2 rows are non-finite"):
        spec("mda").aggregate(x, 2)


def test_signguard_with_unit_bounds_keeps_the_row_of_median_norm_alone():
    x = attacked(7, 2, 5, seed=19, byzantine="scattered")
    norms = torch.linalg.vector_norm(x, dim=1)
    middle = int(norms.argsort()[3])
    result = spec("signguard").aggregate(x, 2, L=1.0, R=1.0, fraction=1.0, quantile=0.5,
                                         generator=torch.Generator())
    assert result.selected.tolist() == [middle]
    torch.testing.assert_close(result.vector, x[middle], rtol=1e-12, atol=1e-12)


def test_clippedclustering_breaks_an_exact_tie_by_the_lowest_row():
    """Two clusters of three, one the other with two coordinates swapped: same size, same
    sum of distances to the last bit; the one holding row 0 is kept, in either order."""
    a = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [1.0, 0.0, 0.05]], dtype=torch.float64)
    b = a[:, [1, 0, 2]]
    interleaved = torch.stack([a[0], b[0], a[1], b[1], a[2], b[2]])
    for x, kept in ((torch.cat([a, b]), [0, 1, 2]), (torch.cat([b, a]), [0, 1, 2]),
                    (interleaved, [0, 2, 4])):
        result = spec("clippedclustering").aggregate(x, 1, history=False, state={})
        assert result.selected.tolist() == kept
        assert_close(result.vector, ref_clippedclustering(rows_of(x), 1, history=False), "tie")


def test_clippedclustering_cosine_of_short_rows():
    from defenses import clippedclustering
    x = torch.tensor([[0.3, 0.4, 0.0], [0.03, 0.04, 0.0], [0.0, 0.0, 0.2]], dtype=torch.float64)
    distances = clippedclustering.cosine_distances(x @ x.T)
    assert abs(float(distances[0, 1])) < 1e-12 and abs(float(distances[0, 2]) - 1) < 1e-12
