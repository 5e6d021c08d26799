"""Issue 22, tests with teeth: the per-step metrics (benchmark.metrics), second part: the
survivors of the whole-module mutmut run (docs/mutation-testing.md, "Measured:
`benchmark/metrics.py`"). Cosines clamped to [−1, 1], undefined ratios and cosines where a
norm overflows or a vector is infinite, the centred recomputation summed in float64, and a
history restored into metrics that already measured steps.

Entry points: `StepMetrics(...).row(...)` (as the engine calls it each step),
`StepMetrics.past` (what a checkpoint saves and restores) and the module's public functions.
"""
import math

import pytest
import torch

from benchmark.metrics import StepMetrics, condition_held, variance_norm_ratio

NAN = float("nan")
F64 = torch.float64


def measure(metrics, step, sampled, honest=None, attack=None, defense=None):
    d = sampled.shape[1]
    return metrics.row(step=step, lr=0.1, points=1, loss=1.0, theta_distance=0.0,
                       sampled=sampled, honest=sampled if honest is None else honest,
                       attack=sampled[:0] if attack is None else attack,
                       defense=torch.ones(d, dtype=sampled.dtype) if defense is None else defense,
                       byzantine_selected=0.0)


# --- cosines stay within [−1, 1] --------------------------------------------------------
# Mutations killed: the clamp's bounds moved to 2 or −2 (or dropped).

def test_parallel_and_opposite_means_have_a_cosine_of_exactly_one_and_minus_one():
    sampled = torch.tensor([[0.1, 0.5]], dtype=F64)
    honest, attack = 3 * sampled, -3 * sampled
    # the unclamped quotient of this Gram matrix's entries rounds past ±1
    stacked = torch.cat([sampled, honest, attack, torch.ones(1, 2, dtype=F64)])
    gram = (stacked @ stacked.T).tolist()
    assert gram[0][1] / math.sqrt(gram[0][0] * gram[1][1]) > 1.0
    assert gram[0][2] / math.sqrt(gram[0][0] * gram[2][2]) < -1.0
    values = measure(StepMetrics(True, 0.9, 5, None), 0, sampled, honest, attack)
    assert values["cos_sampled_honest"] == 1.0
    assert values["cos_sampled_attack"] == -1.0
    assert values["cos_honest_attack"] == -1.0


# --- undefined where a vector is infinite or its squared norm overflows --------------------
# Mutations killed: the finite-product test of the cosine dropped or joined by `and`; the
# finite-norm test of the ratio dropped or joined by `and` (the ratio then 0, the
# condition counted as held).

def test_a_cosine_with_an_infinite_mean_is_nan():
    sampled = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=F64)  # mean (2, 1)
    attack = torch.tensor([[math.inf, 1.0], [math.inf, 1.0]], dtype=F64)
    values = measure(StepMetrics(True, 0.9, 5, None), 0, sampled, attack=attack)
    assert values["attack_norm"] == math.inf and values["attack_max_coord"] == math.inf
    for column in ("cos_sampled_attack", "cos_honest_attack", "cos_attack_defense"):
        assert math.isnan(values[column]), column
    assert values["cos_sampled_defense"] == pytest.approx(3 / math.sqrt(10), rel=1e-15)


def test_a_squared_norm_that_overflows_gives_no_ratio_and_no_condition():
    # honest mean (1e200, 1): its norm is computed as inf (the squares overflow), while
    # the centred rows (0, ∓1) give deviation² = (1 + 1) / 1 = 2
    honest = torch.tensor([[1e200, 0.0], [1e200, 2.0]], dtype=F64)
    sampled = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]], dtype=F64)
    values = measure(StepMetrics(True, 0.9, 5, 10.0), 0, sampled, honest)
    assert values["honest_deviation"] == math.sqrt(2.0)
    assert math.isnan(values["honest_ratio"]) and math.isnan(values["condition_held"])
    # nor a cosine with that mean
    assert math.isnan(values["cos_sampled_honest"])
    assert values["sampled_ratio"] == pytest.approx(4 / 5, rel=1e-15)


def test_variance_norm_ratio_is_undefined_for_an_infinite_or_zero_norm():
    assert math.isnan(variance_norm_ratio(2.0, math.inf))
    assert math.isnan(variance_norm_ratio(0.0, math.inf))
    assert math.isnan(variance_norm_ratio(2.0, NAN))
    assert math.isnan(variance_norm_ratio(2.0, 0.0))
    assert math.isnan(variance_norm_ratio(NAN, 4.0))
    assert variance_norm_ratio(0.0, 4.0) == 0.0 and variance_norm_ratio(2.0, 4.0) == 0.5
    assert condition_held(0.0, 0.25) == 1.0 and math.isnan(condition_held(NAN, NAN))


# --- the centred recomputation sums its rows in float64 ------------------------------------
# Mutation killed: the per-row sums added in the rows' dtype (float32) instead of float64.

def test_the_centred_recomputation_adds_its_row_sums_in_float64():
    # float32 rows around 64 (every partial sum of the mean exact in float32, so the mean
    # is 64 exactly): centred rows 1, −1, 2⁻¹³, −2⁻¹³, squares 1, 1, 2⁻²⁶, 2⁻²⁶. Their
    # float32 sum is 2; in float64 it is 2 + 2⁻²⁵. Σ‖g_i‖² − N‖mean‖² = 2 + 2⁻²⁵ is
    # under 1 % of Σ‖g_i‖² ≈ 16386: the rows are centred.
    rows = torch.tensor([[65.0], [63.0], [64 + 2 ** -13], [64 - 2 ** -13]])
    assert rows.dtype == torch.float32 and float(rows[2, 0]) == 64 + 2 ** -13
    assert float(torch.tensor([1.0, 1.0, 2 ** -26, 2 ** -26]).sum()) == 2.0
    values = measure(StepMetrics(True, 0.9, 5, None), 0, rows)
    assert values["sampled_norm"] == 64.0
    assert values["sampled_deviation"] == math.sqrt((2 + 2 ** -25) / 3)
    assert values["honest_deviation"] == values["sampled_deviation"]


# Mutations killed: the chunk's row count computed as a float (`/` for `//` or for `*`):
# a set larger than a chunk then fails.

def test_a_recomputation_over_several_chunks_counts_every_row(generator):
    # 65 float32 rows of 2¹⁶ coordinates (256 KiB each, 16.25 MiB in all): more rows than
    # a 1 MiB chunk holds, and than the chunk computed from bits per byte would hold
    rows, d = 65, 1 << 16
    base = torch.randn(d, generator=generator)
    vectors = base + 1e-3 * torch.randn(rows, d, generator=generator)
    exact = vectors.double()
    deviation = math.sqrt(float((exact - exact.mean(0)).square().sum()) / (rows - 1))
    values = measure(StepMetrics(True, 0.9, 5, None), 0, vectors, defense=base)
    assert values["sampled_deviation"] == pytest.approx(deviation, rel=1e-5)


# --- a set whose rows are each constant is not a set of identical rows ----------------------
# Mutation killed: the shortcut for one row expanded (stride 0 between rows) taken for a
# column expanded (stride 0 between columns).

def test_rows_expanded_along_their_columns_are_measured():
    column = torch.tensor([1.0, 1.0, 3.0, 3.0], dtype=F64)  # mean 2, centred ±1
    vectors = column[:, None].expand(4, 5)
    assert vectors.stride() == (1, 0) and torch.equal(vectors[0], vectors[1])
    values = measure(StepMetrics(True, 0.9, 5, None), 0, vectors, attack=vectors)
    for name in ("sampled", "attack"):  # Σ‖g_i − mean‖² = 4 rows × 5 coordinates × 1
        assert values[f"{name}_deviation"] == pytest.approx(math.sqrt(20 / 3), rel=1e-12)
        assert values[f"{name}_norm"] == pytest.approx(math.sqrt(20), rel=1e-12)


# --- identical rows of infinities have no deviation ------------------------------------------
# Mutations killed: the memcmp comparison of a contiguous CPU set skipped (its result
# dropped, inverted, or the device misnamed), and an expanded row not recognised as one:
# the element-wise comparison then finds inf == inf and gives a deviation of 0.

def test_identical_infinite_rows_have_an_undefined_deviation():
    row = torch.tensor([math.inf, 1.0], dtype=F64)
    sampled = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=F64)
    for layout, attack in {"contiguous": row.repeat(3, 1), "expanded": row.expand(3, -1)}.items():
        values = measure(StepMetrics(True, 0.9, 5, None), 0, sampled, attack=attack)
        assert math.isnan(values["attack_deviation"]), layout
        assert values["attack_norm"] == math.inf, layout
        # centred rows ±(1, −1): √(4 / 1)
        assert values["sampled_deviation"] == pytest.approx(2.0, rel=1e-12)


def test_identical_infinite_rows_strided_have_an_undefined_deviation():
    rows = torch.tensor([math.inf, 1.0], dtype=F64).repeat(3, 1).T.contiguous().T
    assert not rows.is_contiguous()
    sampled = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=F64)
    values = measure(StepMetrics(True, 0.9, 5, None), 0, sampled, attack=rows)
    assert math.isnan(values["attack_deviation"])


# --- the defense's norm is its float64 norm, metrics on or off ------------------------------
# Mutations killed: the norm computed in the vector's own precision (float32), in the
# metrics' row (from the stacked means) or in both rows.

def test_the_defense_norm_of_a_float32_aggregate_is_computed_in_float64(generator):
    defense = torch.randn(50, generator=generator)
    assert defense.dtype == torch.float32
    exact = math.sqrt(math.fsum(x * x for x in defense.double().tolist()))
    in_float32 = float(torch.linalg.vector_norm(defense))
    assert abs(in_float32 - exact) > 1e-9 * exact  # float32 would be told apart
    sampled = torch.randn(3, 50, generator=generator)
    for full in (True, False):
        values = measure(StepMetrics(full, 0.9, 5, None), 0, sampled, defense=defense)
        assert values["defense_norm"] == pytest.approx(exact, rel=1e-14), full


# --- the history holds the window and one reset period, newest first -----------------------
# Mutations killed: the history unbounded (it grows with the run, and with it every
# checkpoint); `reset_every` not passed on to the window; the default period (16) changed.

@pytest.mark.parametrize("window, reset_every, steps", [(2, 3, 10), (3, None, 25)])
def test_the_history_keeps_the_window_and_one_reset_period(generator, window, reset_every,
                                                           steps):
    options = {} if reset_every is None else {"reset_every": reset_every}
    metrics = StepMetrics(True, 0.5, window, None, **options)
    samples = [torch.randn(3, 2, generator=generator, dtype=F64) for _ in range(steps)]
    for step, sample in enumerate(samples):
        measure(metrics, step, sample)
    kept = window + (16 if reset_every is None else reset_every)
    assert len(metrics.past) == kept
    expected = [sample.mean(0) for sample in reversed(samples[-kept:])]
    for mean, sample_mean in zip(metrics.past, expected):
        assert torch.allclose(mean, sample_mean, rtol=1e-12, atol=1e-14)


# --- a history restored into metrics that already measured steps --------------------------
# Mutation killed: the O(d) update of the discounted sum taken whenever the previous step
# was measured, even though `past` was replaced since (a checkpoint loaded into a
# Simulation that had run): the curvature then comes from the old history's sum.

def test_a_history_restored_after_steps_were_measured_replaces_the_old_sum(generator):
    momentum, window, reset_every, step = 0.5, 3, 4, 6
    runs = [[torch.randn(3, 4, generator=generator, dtype=F64) for _ in range(step + 1)]
            for _ in range(2)]
    used = StepMetrics(True, momentum, window, None, reset_every=reset_every)
    fresh = StepMetrics(True, momentum, window, None, reset_every=reset_every)
    other = StepMetrics(True, momentum, window, None, reset_every=reset_every)
    for t in range(step):
        measure(used, t, runs[0][t])
        measure(other, t, runs[1][t])
    history = [mean.clone() for mean in other.past]
    for metrics in (used, fresh):
        metrics.past.clear()
        metrics.past.extend(history)
    means = [sample.mean(0) for sample in runs[1]]
    expected = momentum * sum(momentum ** i * float(means[step] @ means[step - 1 - i])
                              for i in range(window))
    again, restored = measure(used, step, runs[1][step]), measure(fresh, step, runs[1][step])
    assert restored["curvature"] == pytest.approx(expected, rel=1e-12)
    assert again["curvature"] == restored["curvature"]
    assert again["cos_sampled_previous"] == restored["cos_sampled_previous"]
