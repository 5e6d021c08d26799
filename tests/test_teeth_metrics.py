"""Issue 22, tests with teeth: the per-step metrics (benchmark.metrics) where the mutation
run of that module found them loose: the discounted window at its reset steps, and the
recognition of a set of identical rows (one vector sent f times), whatever the tensor's
layout.

Entry point: `StepMetrics(...).row(...)`, as the engine calls it each step.
"""
import math

import pytest
import torch

from benchmark.metrics import StepMetrics


def measure(metrics, step, sampled, attack=None):
    d = sampled.shape[1]
    attack = sampled[:0] if attack is None else attack
    return metrics.row(step=step, lr=0.1, points=1, loss=1.0, theta_distance=0.0,
                       sampled=sampled, honest=sampled, attack=attack,
                       defense=torch.ones(d, dtype=sampled.dtype), byzantine_selected=0.0)


def exact_deviation(rows):
    rows = rows.double()
    return math.sqrt(float((rows - rows.mean(0)).square().sum()) / (len(rows) - 1))


# --- the discounted window at its reset steps -------------------------------------------
# Mutation killed: the direct recomputation (every `reset_every` steps) giving no sum when
# the window holds a single mean.

@pytest.mark.parametrize("reset_every", [1, 2, 3])
def test_a_window_of_one_step_gives_the_curvature_at_every_step(generator, reset_every):
    momentum = 0.5
    samples = [torch.randn(3, 4, generator=generator, dtype=torch.float64) for _ in range(7)]
    metrics = StepMetrics(True, momentum, 1, None, reset_every=reset_every)
    for step, sample in enumerate(samples):
        value = measure(metrics, step, sample)["curvature"]
        if step == 0:
            assert math.isnan(value)
        else:  # μ⟨m_t, m_{t−1}⟩: the window holds the previous mean only
            expected = momentum * float(sample.mean(0) @ samples[step - 1].mean(0))
            assert value == pytest.approx(expected, rel=1e-9), step


# --- identical rows ---------------------------------------------------------------------
# Mutations killed: a single-column set taken for identical rows from its stride; a
# non-contiguous set compared as raw memory; the fallback comparison (CPU tensors that are
# not contiguous) inverted, or reduced over the wrong dimension.

def layouts(rows):
    """The same rows as a contiguous tensor, a transposed view and a strided slice."""
    transposed = rows.T.contiguous().T
    padded = torch.zeros(len(rows), 2 * rows.shape[1], dtype=rows.dtype)
    padded[:, ::2] = rows
    strided = padded[:, ::2]
    assert not strided.is_contiguous()
    assert torch.equal(transposed, rows) and torch.equal(strided, rows)
    if rows.shape[1] == 1:  # a single column transposed is still contiguous
        return {"contiguous": rows, "strided": strided}
    assert not transposed.is_contiguous()
    return {"contiguous": rows, "transposed": transposed, "strided": strided}


@pytest.mark.parametrize("columns", [1, 5])
def test_rows_equal_only_at_the_start_are_measured(generator, columns):
    first = torch.randn(columns, generator=generator, dtype=torch.float64)
    rows = torch.stack([first, first, first + 1.0, first - 2.0])
    expected = exact_deviation(rows)
    assert expected > 0.5
    for layout, vectors in layouts(rows).items():
        values = measure(StepMetrics(True, 0.9, 5, None), 0, vectors, attack=vectors)
        for name in ("sampled", "attack"):
            assert values[f"{name}_deviation"] == pytest.approx(expected, rel=1e-9), layout


@pytest.mark.parametrize("columns", [1, 7])
def test_identical_rows_have_a_deviation_of_exactly_zero(generator, columns):
    row = torch.randn(columns, generator=generator, dtype=torch.float64)
    rows = row.repeat(3, 1)  # three: the mean by weights of 1/3 is not exact
    for layout, vectors in {**layouts(rows), "expanded": row.expand(3, -1)}.items():
        values = measure(StepMetrics(True, 0.9, 5, None), 0, vectors, attack=vectors)
        for name in ("sampled", "attack"):
            assert values[f"{name}_deviation"] == 0.0, layout
            assert values[f"{name}_norm"] == pytest.approx(float(row.norm()), rel=1e-12)


def test_rows_differing_in_every_coordinate_are_not_identical():
    rows = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 5.0]], dtype=torch.float64)
    spread = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]], dtype=torch.float64)
    for vectors in (*layouts(rows).values(), *layouts(spread).values()):
        values = measure(StepMetrics(True, 0.9, 5, None), 0, vectors, attack=vectors)
        assert values["attack_deviation"] == pytest.approx(exact_deviation(vectors), rel=1e-9)
