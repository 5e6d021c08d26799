"""Every defense against a slow, obviously correct reference (tests/defense_references.py,
the filtering rules' in tests/defense_references_filters.py), plus the properties the
issue asks for: row-order invariance, the requirement boundary, no-op on identical rows,
translation equivariance, non-finite Byzantine rows.

References work in float64 on Python lists; inputs are small (n <= 12, d <= 5).
"""
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from benchmark import registry
from benchmark.api import Aggregated, keyword_defaults
from benchmark.plugins import BoundDefense
from tests.defense_references import (
    closest_mean,
    mean_rows,
    rank,
    ref_aksel,
    ref_arc,
    ref_average,
    ref_bucketing,
    ref_bulyan,
    ref_caf,
    ref_cclip,
    ref_cge,
    ref_clip,
    ref_fltrust,
    ref_geomed,
    ref_krum,
    ref_mda,
    ref_meamed,
    ref_median,
    ref_monna,
    ref_multi_krum,
    ref_nnm,
    ref_phocas,
    ref_signsgd,
    ref_smea,
    ref_trmean,
    rows_of,
    sq_distance,
    trusted_gradient,
)
from tests.defense_references_filters import (
    ref_clippedclustering,
    ref_dnc,
    ref_foolsgold,
    ref_signguard,
)

INF = math.inf


# --- the table -------------------------------------------------------------------

@dataclass
class Rule:
    reference: Callable
    translation: bool = True       # rule(x + t) == rule(x) + t
    noop: bool = True              # rule(identical rows) == that row
    robust: bool = True            # at most f non-finite rows leave the output finite
    min_n: Callable[[int], int] | None = None  # only where `check`, not `needs`, limits n


# One entry per registered defense; the smallest n comes from the rule's `needs`.
RULES = {
    "average": Rule(ref_average, robust=False),
    "median": Rule(ref_median),
    "trmean": Rule(ref_trmean),
    "phocas": Rule(ref_phocas),
    "meamed": Rule(ref_meamed),
    "krum": Rule(ref_krum),
    "multi-krum": Rule(ref_multi_krum),
    "bulyan": Rule(ref_bulyan),
    "mda": Rule(ref_mda),
    "aksel": Rule(ref_aksel),
    "cge": Rule(ref_cge, translation=False),
    "geomed": Rule(ref_geomed),
    "cclip": Rule(ref_cclip, translation=False),
    "monna": Rule(ref_monna),
    "caf": Rule(ref_caf),
    "smea": Rule(ref_smea),
    "signsgd": Rule(ref_signsgd, translation=False, noop=False),
    "nnm": Rule(ref_nnm),
    "arc": Rule(ref_arc, translation=False),
    "bucketing": Rule(ref_bucketing),
    "dnc": Rule(ref_dnc),
    "signguard": Rule(ref_signguard, translation=False),
    "clippedclustering": Rule(ref_clippedclustering, translation=False),
    "foolsgold": Rule(ref_foolsgold, translation=False, noop=False),
    "clip": Rule(ref_clip, translation=False, min_n=lambda f: 2 * f + 1),  # median norm
    # with the server gradient `trusted_gradient(d)` (tests/defense_references.py)
    "fltrust": Rule(ref_fltrust, translation=False, noop=False),
}

# Selecting rules whose vector is not the plain mean of the rows they select.
NOT_A_PLAIN_MEAN = {"bulyan", "signguard", "clippedclustering", "fltrust"}
NAMES = sorted(registry.names("defense"))


def min_n(name, f):
    """The smallest n the rule accepts with f, from its declaration."""
    rule = RULES.get(name)
    if rule is None:
        pytest.fail(f"defense {name!r} has no entry in RULES (tests/test_defenses.py): add "
                    f"a reference `ref_{name.replace('-', '_')}` to tests/defense_references.py "
                    "and `RULES[name] = Rule(reference, ...)`")
    return rule.min_n(f) if rule.min_n else spec(name).needs.minimum(f)


def spec(name):
    return registry.lookup("defense", name).spec


def bound(name, f, **options):
    """The rule as the engine calls it (options, generator and state injected), with
    fresh state and a seed-0 generator; a lone pre-aggregator too."""
    plugin = registry.lookup("defense", name)
    component = registry.Component(plugin, {**plugin.spec.options, **options})
    return BoundDefense(name, f, torch.Generator().manual_seed(0), [component])


def aggregate(name, x, f, **options):
    """What the rule returns on x (see `bound`); a rule that uses the server's data
    (`server_gradient`) gets `trusted_gradient(d)` as the server's update."""
    defense = bound(name, f, **options)
    if defense.uses_server_data:
        defense.server_gradient = torch.tensor(trusted_gradient(x.shape[1]), dtype=x.dtype)
    return defense.aggregate(x)


def run(name, x, f, **options):
    """The rule on x (see `aggregate`); returns a float64 tensor."""
    result = aggregate(name, x, f, **options)
    if isinstance(result, Aggregated):
        if name not in NOT_A_PLAIN_MEAN:  # bulyan: a coordinate-wise stage; others clip
            assert torch.equal(result.vector, x[result.selected].mean(dim=0))
        result = result.vector
    return result.to(torch.float64)


def inputs(kind, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        return torch.randint(-2, 3, (n, d), generator=g).to(torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if kind == "duplicates":
        x[n // 2:] = x[0]
    return x


def assert_close(result, expected, name):
    expected = torch.tensor(expected, dtype=torch.float64)
    assert result.shape == expected.shape, name
    torch.testing.assert_close(result, expected, rtol=1e-7, atol=1e-9, equal_nan=True,
                               msg=lambda m: f"{name}: {m}")


def test_every_registered_defense_has_a_reference():
    missing = sorted(set(NAMES) - set(RULES))
    assert not missing, (f"no reference for {missing}: add each to tests/defense_references.py "
                         "and to RULES in tests/test_defenses.py")
    assert not set(RULES) - set(NAMES), "RULES names a defense the registry does not list"
    assert len(NAMES) >= 20


# Distinct vectors tied on a selection score are ranked by row index, in the rule and in its
# reference alike; integer-valued inputs keep every distance exact so such ties are real.
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["normal", "ties", "duplicates"])
@pytest.mark.parametrize("f, extra_n", [(1, 0), (2, 0), (2, 3)])
def test_rule_agrees_with_its_reference(name, kind, f, extra_n):
    n = min_n(name, f) + extra_n + (2 if name in ("average", "bucketing", "fltrust") else 0)
    x = inputs(kind, n, 4, seed=7 * n + f)
    assert_close(run(name, x, f), RULES[name].reference(rows_of(x), f), name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [math.nan, INF, -INF, "mixed"])
def test_non_finite_byzantine_rows(name, bad):
    f = 2
    n = max(min_n(name, f) + 2, 7)
    x = inputs("normal", n, 4, seed=3)
    if bad == "mixed":
        x[1, 0], x[4, 2] = math.nan, INF
    else:
        x[1], x[4] = bad, bad
    result = run(name, x, f)
    assert_close(result, RULES[name].reference(rows_of(x), f), name)
    if RULES[name].robust and not spec(name).preaggregator:
        assert torch.isfinite(result).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_row_order_does_not_matter(name):
    if spec(name).randomized:
        pytest.skip("the shuffle draws the buckets; tested for determinism instead")
    f, x = 2, inputs("normal", min_n(name, 2) + 2, 4, seed=11)
    permutation = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    result, permuted = run(name, x, f), run(name, x[permutation], f)
    if spec(name).preaggregator:
        result = result[permutation]
    torch.testing.assert_close(permuted, result, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["median", "trmean", "phocas", "meamed", "signsgd", "arc"])
def test_coordinate_rules_ignore_row_order_even_with_ties(name):
    x = inputs("ties", 9, 5, seed=5)
    permutation = torch.randperm(9, generator=torch.Generator().manual_seed(2))
    result = run(name, x, 2)
    expected = result[permutation] if spec(name).preaggregator else result
    torch.testing.assert_close(run(name, x[permutation], 2), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("f", [1, 2, 3])
def test_requirement_boundary(name, f):
    defense = spec(name)
    n = min_n(name, f)
    assert defense.reason(n, f, **defense.options) is None
    if n > 1:
        reason = defense.reason(n - 1, f, **defense.options)
        assert isinstance(reason, str) and reason, name


@pytest.mark.parametrize("name", NAMES)
def test_requirement_text_states_needs(name):
    defense = spec(name)
    if defense.needs.minimum(1) > 1:
        assert str(defense.needs) in defense.requirement, name


@pytest.mark.parametrize("name", [n for n in NAMES if n not in RULES or RULES[n].noop])
def test_identical_rows_give_that_row(name):
    row = torch.tensor([0.5, -1.25, 2.0, 0.0], dtype=torch.float64)
    x = row.expand(min_n(name, 2) + 1, -1).clone()
    result = run(name, x, 2)
    expected = row.expand_as(result) if result.dim() == 2 else row
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in RULES or RULES[n].translation])
def test_translation_equivariance(name):
    x = inputs("normal", min_n(name, 2) + 2, 4, seed=13)
    shift = torch.tensor([10.0, -3.0, 0.5, 100.0], dtype=torch.float64)
    torch.testing.assert_close(run(name, x + shift, 2), run(name, x, 2) + shift,
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out_and_input_untouched(name):
    x = inputs("normal", min_n(name, 2) + 2, 5, seed=17).to(torch.float32)
    before = x.clone()
    result = aggregate(name, x, 2)
    result = result.vector if isinstance(result, Aggregated) else result
    assert result.dtype == torch.float32 and torch.equal(x, before)


def test_krum_iclr21_variant_and_m():
    x = inputs("normal", 11, 4, seed=19)
    variant = dict(squared=False, neighbours="n-f-1", m="n-f-2")
    assert_close(run("krum", x, 3, **variant), ref_krum(rows_of(x), 3, **variant), "krum")
    assert_close(run("krum", x, 3, m="n-f"), ref_multi_krum(rows_of(x), 3), "krum m=n-f")
    assert_close(run("krum", x, 3, m=5), ref_krum_m5(rows_of(x), 3), "krum m=5")
    assert spec("krum").check(11, 3, m="n-f-9", **variant_without_m(variant))


def ref_krum_m5(rows, f):
    n, k = len(rows), len(rows) - f - 2

    def score(i):
        return sum(sorted(sq_distance(rows[i], rows[j]) for j in range(n) if j != i)[:k])
    return mean_rows([rows[i] for i in rank(rows, score)[:5]])


def variant_without_m(variant):
    return {k: v for k, v in variant.items() if k != "m"}


def test_aksel_n_minus_f_mode():
    x = inputs("normal", 9, 4, seed=23)
    assert_close(run("aksel", x, 2, mode="n-f"), ref_aksel(rows_of(x), 2, mode="n-f"), "aksel")


def test_geomed_options_and_optimality():
    x = inputs("normal", 9, 4, seed=29)
    for options in ({"iterations": 3}, {"tolerance": 1e-12, "iterations": 1000}, {"nu": 0.5}):
        assert_close(run("geomed", x, 2, **options), ref_geomed(rows_of(x), 2, **options),
                     f"geomed {options}")
    z = run("geomed", x, 2, tolerance=1e-14, iterations=10000)
    gradient = sum((z - row) / (z - row).norm() for row in x)
    assert gradient.norm() < 1e-5  # the objective's gradient vanishes at the median


@pytest.mark.parametrize("name, reference", [("cclip", ref_cclip), ("monna", ref_monna)])
def test_stateful_rules_start_from_the_previous_aggregate(name, reference):
    defense, state = spec(name), {}
    first, second = inputs("normal", 9, 4, seed=31), inputs("normal", 9, 4, seed=37) + 3
    options = {"tau": 1.0, "iterations": 3} if name == "cclip" else {}
    previous = defense.aggregate(first, 2, **{**defense.options, **options}, state=state)
    previous = previous.vector if isinstance(previous, Aggregated) else previous
    result = defense.aggregate(second, 2, **{**defense.options, **options}, state=state)
    result = result.vector if isinstance(result, Aggregated) else result
    pivot = previous.tolist()
    expected = (reference(rows_of(second), 2, 1.0, 3, center=pivot) if name == "cclip"
                else reference(rows_of(second), 2, pivot=pivot))
    assert_close(result.to(torch.float64), expected, name)


def test_monna_median_pivot_is_stateless():
    x = inputs("normal", 9, 4, seed=41)
    state = {"previous": torch.full((4,), 100.0, dtype=torch.float64)}
    result = spec("monna").aggregate(x, 2, pivot="median", state=state).vector
    assert_close(result, ref_monna(rows_of(x), 2), "monna")


def test_signsgd_explicit_scale():
    x = inputs("normal", 9, 4, seed=43)
    assert_close(run("signsgd", x, 2, scale=0.25), ref_signsgd(rows_of(x), 2, 0.25), "signsgd")


def test_smea_refuses_too_many_subsets():
    check = spec("smea").check
    assert check(51, 2, max_subsets=5000) is None                       # C(51, 2) = 1,275
    assert "max_subsets" in check(51, 3, max_subsets=5000)              # C(51, 3) = 20,825
    assert check(51, 3, max_subsets=20825) is None


@pytest.mark.parametrize("name, expected", [
    ("median", 1 / math.sqrt(51 - 12)),
    ("mda", (51 - 12) / (math.sqrt(8) * 12)),
    ("krum", 1 / math.sqrt(2 * (39 + 12 * (51 + 12 * 37 - 2) / 25))),
    ("bulyan", 1 / math.sqrt(2 * (39 + 12 * (51 + 12 * 37 - 2) / 25))),
    ("trmean", None),
])
def test_upper_bounds(name, expected):
    bound = spec(name).upper_bound
    value = None if bound is None else bound(51, 12, 79510)
    assert value == pytest.approx(expected) if expected is not None else value is None


def test_mean_closest_kernel_on_ties_and_both_window_sizes():
    """benchmark.api.mean_closest (phocas, meamed, bulyan) against a sort by
    (distance, value), with windows larger and smaller than half the rows."""
    from benchmark.api import mean_closest, sorted_coordinates
    g = torch.Generator().manual_seed(0)
    for trial in range(400):
        n = int(torch.randint(2, 12, (1,), generator=g))
        count = int(torch.randint(1, n + 1, (1,), generator=g))
        x = (torch.randint(-3, 4, (n, 3), generator=g).to(torch.float64) if trial % 2
             else torch.randn(n, 3, generator=g, dtype=torch.float64))
        center = torch.randint(-3, 4, (3,), generator=g).to(torch.float64) / 2
        expected = [closest_mean(rows_of(x.T)[j], float(center[j]), count) for j in range(3)]
        assert_close(mean_closest(sorted_coordinates(x), center, count), expected, "mean_closest")


def test_template_defense_is_a_working_example():
    template = spec("template")
    x = inputs("normal", 5, 3, seed=47)
    assert torch.equal(template.aggregate(x, 1, scale=2.0), x.mean(dim=0) * 2.0)
    assert template.check(5, 1, scale=1.0) is None and "positive" in template.check(5, 1, scale=0.0)
    assert "template" not in registry.names("defense")  # hidden from listings and matrices


@pytest.mark.parametrize("kind", ["defense", "attack", "server_attack"])
def test_option_defaults_are_written_once(kind):
    """A plugin's options come from its own function's keyword defaults; an explicit
    `options=` is only for a function shared with other plugins (krum's kernel) or one
    that forwards `**options` to shared code holding the defaults (min-max, min-sum)."""
    for name, plugin in registry.discover(kind).items():
        function = plugin.spec.aggregate if kind == "defense" else plugin.spec.attack
        if function is not None and Path(inspect.getsourcefile(function)) == plugin.path:
            declared = keyword_defaults(function)
            forwards = any(p.kind is p.VAR_KEYWORD
                           for p in inspect.signature(function).parameters.values())
            assert plugin.spec.options == declared or (forwards and not declared), \
                f"{kind} {name}: options disagree with {function.__name__}'s defaults"
