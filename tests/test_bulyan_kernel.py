"""Bulyan's CPU kernels: the coordinate stage over the selected rows
(coordinates.coordinate_mean_around_median, compiled and numpy) against
mean_around_median over the sorted selected rows, and the repeated-Krum selection
against a plain loop (ties, non-finite rows, rows that all score +inf)."""
import math

import numpy as np
import pytest
import torch

from benchmark import api
from benchmark.coordinates import COLUMN_BLOCK, coordinate_mean_around_median
from defenses import bulyan
from tests import test_coordinate_kernels as coordinate_kernels
from tests.defense_references import bulyan_picks, rows_of


def awkward_inputs(n, dtype, seed):
    return coordinate_kernels.awkward_inputs(n, dtype, seed, extra_columns=100)


def blocked_torch_form(x, selected, count):
    return api.coordinate_statistic(x[selected],
                                    lambda ordered: api.mean_around_median(ordered, count))


path = coordinate_kernels.path  # both CPU paths: compiled and numpy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [2, 3, 7, 10, 15, 27, 30])
def test_mean_around_median_of_the_selection(n, dtype, path):
    x = awkward_inputs(n + 4, dtype, seed=n)
    selected = torch.randperm(n + 4, generator=torch.Generator().manual_seed(n))[:n]
    for count in sorted({1, 2, 3, max(1, n // 3), n // 2 + 1, n}):
        result = coordinate_mean_around_median(x, count, selected)
        expected = blocked_torch_form(x, selected, count)
        torch.testing.assert_close(result, expected, equal_nan=True)
        whole = api.mean_around_median(x[selected].sort(dim=0).values, count)  # torch's sort
        torch.testing.assert_close(result, whole, equal_nan=True)
        if n - count <= count:  # torch's mean_closest sums in its own order
            continue
        # a small window (bulyan's): the same bits where torch's mean of a few gathered
        # values sums them first to last too (whole blocks)
        full = slice(0, 2 * COLUMN_BLOCK)
        assert torch.equal(result[full].isnan(), expected[full].isnan()), (n, count)
        assert torch.equal(result[full].nan_to_num(), expected[full].nan_to_num()), (n, count)


def test_more_than_17_values_in_the_window_agree_to_rounding(path):
    x = torch.randn(60, 3000, generator=torch.Generator().manual_seed(1))
    selected = torch.arange(5, 60)
    for count in (18, 25):
        torch.testing.assert_close(coordinate_mean_around_median(x, count, selected),
                                   blocked_torch_form(x, selected, count))


def test_all_rows_by_default_and_other_dtypes_through_torch(path):
    x = awkward_inputs(9, torch.float64, seed=2)
    expected = blocked_torch_form(x, torch.arange(9), 2)
    torch.testing.assert_close(coordinate_mean_around_median(x, 2), expected, equal_nan=True)
    half = x.to(torch.bfloat16)
    result = coordinate_mean_around_median(half, 2, torch.arange(1, 9))
    assert result.dtype == torch.bfloat16
    assert torch.equal(result.nan_to_num(),
                       blocked_torch_form(half, torch.arange(1, 9), 2).nan_to_num())


@pytest.mark.parametrize("layout", ["ties", "some non-finite", "all non-finite", "random"])
def test_repeated_krum_picks_as_the_plain_loop(layout):
    g = torch.Generator().manual_seed(5)
    for n, f in [(7, 1), (11, 2), (15, 3), (12, 2)]:
        x = (torch.randn(n, 4, generator=g, dtype=torch.float64) if layout == "random"
             else torch.randint(-1, 2, (n, 4), generator=g).to(torch.float64))
        if layout == "some non-finite":
            x[1, 0], x[n - 2, 3], x[3] = math.nan, math.inf, -math.inf
        if layout == "all non-finite":
            x[:, 0] = math.nan
        picks = bulyan.select(x, f, n - 2 * f).tolist()
        assert picks == bulyan_picks(rows_of(x), f), (layout, n, f)


def test_selection_stage_at_a_benchmark_size(path):
    """n = 51, f = 12 (rows far from each other in one group of 27): the defense's output
    is the coordinate stage over the selection."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(51, COLUMN_BLOCK + 300, generator=g)
    result = bulyan.aggregate(x, 12)
    assert len(set(result.selected.tolist())) == 27
    expected = blocked_torch_form(x, result.selected, 3)
    assert torch.equal(result.vector[:COLUMN_BLOCK], expected[:COLUMN_BLOCK])
    torch.testing.assert_close(result.vector, expected)
    assert np.isfinite(result.vector.numpy()).all()
