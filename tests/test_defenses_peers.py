"""The defenses of issue #20 (peers part) beyond the table of tests/test_defenses.py:
their options against the references, randomness drawn from the generator only, the
per-run state of clippedclustering, and the Byzantine rows each rule's definition drops."""
import math

import pytest
import torch

from benchmark.api import Aggregated, UsageError
from benchmark.plugins import BoundDefense
from tests.defense_references import ref_clip, rows_of
from tests.defense_references_filters import (
    ref_clippedclustering,
    ref_dnc,
    ref_foolsgold,
    ref_signguard,
)
from tests.test_defenses import assert_close, inputs, run, spec

RANDOMIZED = ("dnc", "signguard")


def call(name, x, f, seed=0, state=None, **options):
    defense = spec(name)
    extra = {"generator": torch.Generator().manual_seed(seed)} if defense.randomized else {}
    if defense.stateful:
        extra["state"] = {} if state is None else state
    return defense.aggregate(x, f, **{**defense.options, **options}, **extra)


def vector(result):
    return result.vector if isinstance(result, Aggregated) else result


@pytest.mark.parametrize("seed", range(12))
def test_dnc_on_coordinate_subsets_agrees_with_its_reference(seed):
    x = inputs("normal", 9 + seed % 3, 7, seed=100 + seed)
    for options in ({"b": 3, "niters": 4}, {"b": 2, "niters": 1, "c": 1.5}, {"b": 6}):
        result = run("dnc", x, 2, **options)
        assert_close(result, ref_dnc(rows_of(x), 2, **{**spec("dnc").options, **options}),
                     f"dnc {options}")


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("fraction", [0.3, 1.0])
def test_signguard_agrees_with_its_reference_on_wider_inputs(seed, fraction):
    g = torch.Generator().manual_seed(seed)
    n, d = 9 + seed % 4, 30
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.3
    x[: 2 + seed % 2] *= -float(1 + seed % 3)  # a flipped group, sometimes with large norms
    x[-1, : seed % 5] = 0.0                     # some zero coordinates
    result = run("signguard", x, 2, fraction=fraction)
    assert_close(result, ref_signguard(rows_of(x), 2, fraction=fraction), "signguard")


@pytest.mark.parametrize("seed", range(20))
def test_clippedclustering_agrees_with_its_reference_on_more_inputs(seed):
    x = inputs("ties" if seed % 2 else "normal", 7 + seed % 6, 5, seed=200 + seed)
    assert_close(run("clippedclustering", x, 2), ref_clippedclustering(rows_of(x), 2),
                 "clippedclustering")


@pytest.mark.parametrize("seed", range(20))
def test_foolsgold_agrees_with_its_reference_on_more_inputs(seed):
    x = inputs("ties" if seed % 2 else "normal", 3 + seed % 9, 5, seed=300 + seed)
    assert_close(run("foolsgold", x, 2), ref_foolsgold(rows_of(x), 2), "foolsgold")


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_rules_are_deterministic_under_the_generator(name):
    x = inputs("normal", 11, 40, seed=5)
    options = {"b": 5} if name == "dnc" else {"fraction": 0.1}
    first, again = (vector(call(name, x, 2, seed=3, **options)) for _ in range(2))
    assert torch.equal(first, again)
    draws = {tuple(vector(call(name, x, 2, seed=s, **options)).tolist()) for s in range(8)}
    assert len(draws) > 1  # the coordinates drawn change with the seed


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_rules_ignore_row_order_under_the_same_generator(name):
    # the coordinate draws do not depend on the rows, so the same seed gives the same rule
    x = inputs("normal", 11, 40, seed=7)
    options = {"b": 5} if name == "dnc" else {"fraction": 0.2}
    permutation = torch.randperm(11, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(vector(call(name, x[permutation], 2, seed=1, **options)),
                               vector(call(name, x, 2, seed=1, **options)),
                               rtol=1e-9, atol=1e-12)


def test_randomized_rules_draw_from_the_bound_generator_only():
    x = inputs("normal", 11, 40, seed=9).to(torch.float32)
    for text in ("dnc:b=5", "signguard"):
        torch.manual_seed(0)
        first = BoundDefense(text, 2, torch.Generator().manual_seed(5))(x)[0]
        torch.manual_seed(1)  # the global generator changes nothing
        second = BoundDefense(text, 2, torch.Generator().manual_seed(5))(x)[0]
        assert torch.equal(first, second), text


def attacked(n=13, f=3, d=20, seed=0):
    """Honest rows around a common mean, then f Byzantine rows far along -mean."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    honest = mean + 0.3 * torch.randn(n - f, d, generator=g, dtype=torch.float64)
    byzantine = -4 * mean + 0.1 * torch.randn(f, d, generator=g, dtype=torch.float64)
    return torch.cat([byzantine, honest]), set(range(f))


@pytest.mark.parametrize("name", ["dnc", "signguard", "clippedclustering"])
def test_selecting_rules_drop_a_far_away_byzantine_group(name):
    x, byzantine = attacked()
    selected = set(call(name, x, 3, b=10).selected.tolist() if name == "dnc"
                   else call(name, x, 3).selected.tolist())
    assert selected and not selected & byzantine, name


def test_foolsgold_gives_sybil_copies_no_weight():
    x, byzantine = attacked()
    x[sorted(byzantine)] = x[0].clone()              # three identical Byzantine rows
    result = vector(call("foolsgold", x, 3))
    louder = x.clone()
    louder[sorted(byzantine)] *= 100                 # their cosines are unchanged
    torch.testing.assert_close(vector(call("foolsgold", louder, 3)), result)
    assert torch.isfinite(result).all()


def test_foolsgold_on_identical_rows_returns_zero():
    x = torch.tensor([[1.0, 2.0]]).expand(5, -1).clone()
    assert torch.equal(vector(call("foolsgold", x, 1)), torch.zeros(2))


def test_clippedclustering_clips_to_the_median_of_every_norm_seen():
    defense, state = spec("clippedclustering"), {}
    first = inputs("normal", 9, 4, seed=31) * 10
    second = inputs("normal", 9, 4, seed=37)
    defense.aggregate(first, 2, state=state)
    result = defense.aggregate(second, 2, state=state)
    past = [float(v) for v in first.norm(dim=1)]
    assert len(state["norms"]) == 18
    assert_close(result.vector.to(torch.float64),
                 ref_clippedclustering(rows_of(second), 2, past=past), "clippedclustering")
    fresh = defense.aggregate(second, 2, history=False, state={"norms": torch.tensor(past)})
    assert_close(fresh.vector.to(torch.float64), ref_clippedclustering(rows_of(second), 2),
                 "clippedclustering history=false")


def test_clippedclustering_history_skips_non_finite_rows():
    x, state = inputs("normal", 9, 4, seed=41), {}
    x[2] = math.nan
    x[5, 1] = math.inf
    call("clippedclustering", x, 2, state=state)
    assert len(state["norms"]) == 7 and torch.isfinite(state["norms"]).all()


def test_clip_with_a_fixed_threshold():
    x = inputs("normal", 7, 5, seed=43) * 3
    result = call("clip", x, 2, tau=1.5)
    assert_close(result.to(torch.float64), ref_clip(rows_of(x), 2, tau=1.5), "clip tau")
    assert (result.norm(dim=1) <= 1.5 + 1e-12).all()
    median_clip = call("clip", x, 2)
    assert median_clip.norm(dim=1).max() <= x.norm(dim=1).median() + 1e-12 or len(x) % 2 == 0


def test_clip_composes_and_checks_tau():
    x = inputs("normal", 11, 6, seed=47)
    vector_, _ = BoundDefense("clip:tau=0.5+median", 2, torch.Generator())(x)
    expected = spec("median").aggregate(call("clip", x, 2, tau=0.5), 2)
    assert torch.equal(vector_, expected)
    check = spec("clip").check
    assert check(1, 3, tau=2.0) is None            # a fixed tau needs no honest majority
    assert "positive" in check(11, 2, tau=0.0) and "positive" in check(11, 2, tau="x")
    with pytest.raises(UsageError, match="positive"):
        BoundDefense("clip:tau=-1+median", 2, torch.Generator()).check(11)


@pytest.mark.parametrize("text, message", [
    ("dnc:niters=0", "niters >= 1"), ("dnc:c=-1", "c must be >= 0"),
    ("signguard:L=2", "0 <= L <= 1 <= R"), ("signguard:fraction=0", "fraction must be > 0"),
    ("foolsgold:kappa=0", "kappa must be a positive"),
])
def test_checks_reject_bad_options(text, message):
    with pytest.raises(UsageError, match=message):
        BoundDefense(text, 2, torch.Generator()).check(11)


@pytest.mark.parametrize("name", ["dnc", "signguard", "clippedclustering", "foolsgold", "clip"])
def test_paper_sized_input_runs_and_keeps_dtype(name):
    x = torch.randn(51, 3000, generator=torch.Generator().manual_seed(3))
    x[:12] = -2 * x[12:].mean(dim=0)
    before = x.clone()
    result = vector(call(name, x, 12))
    assert result.dtype == torch.float32 and torch.isfinite(result).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("f", [12, 24])
@pytest.mark.parametrize("name", ["dnc", "signguard", "clippedclustering"])
def test_selecting_rules_drop_identical_little_rows_at_the_paper_shape(name, f):
    """n = 51 with f rows of mean - 1.5σ (the kernel benchmark's input): no Byzantine pick.
    SignGuard needs its quantile 0.5 here: at 0.3 the 24 identical rows win."""
    from benchmark.kernels import attacked_input
    x = attacked_input(51, f, 4000, 0, "cpu")
    byzantine = (x[:, None, :] == x[None, :, :]).all(dim=2).sum(dim=1) > 1
    selected = call(name, x, f).selected
    assert len(selected) > 0 and not byzantine[selected].any(), name


@pytest.mark.parametrize("name", ["dnc", "signguard", "clippedclustering"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_are_never_selected(name, bad):
    x = inputs("normal", 11, 6, seed=53)
    x[3], x[7, 2] = bad, bad
    result = call(name, x, 3)
    assert not {3, 7} & set(result.selected.tolist()) and torch.isfinite(result.vector).all()


def test_foolsgold_gives_non_finite_rows_no_weight():
    x = inputs("normal", 9, 6, seed=59)
    clean = vector(call("foolsgold", x[2:], 2))
    x[0], x[1, 3] = math.nan, math.inf
    torch.testing.assert_close(vector(call("foolsgold", x, 2)), clean)
