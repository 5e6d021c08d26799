"""Issue 22, tests with teeth: benchmark.coordinates, measured with mutmut (see
docs/mutation-testing.md, "Measured: benchmark/coordinates.py").

The coordinate-wise statistics through their public functions (benchmark.coordinates,
re-exported by benchmark.api), on both CPU paths (`COMPILED` set to True or False, the
switch the module documents) and on the torch path (other dtypes), against plain
definitions written here: a whole torch sort, then the window of closest values picked
by brute force.
"""
import math

import pytest
import torch

from benchmark import coordinates, coordinates_numba, registry
from benchmark.coordinates import (WINDOW_CHUNK, coordinate_mean_around_median,
                                   coordinate_mean_around_trimmed_mean, coordinate_median,
                                   coordinate_trimmed_mean, mean_around_median, mean_closest,
                                   median_of_sorted, sorted_coordinates)


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    if request.param == "compiled" and not coordinates_numba.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(coordinates, "COMPILED", request.param == "compiled")
    return request.param


def inputs(n, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    x[:, 1::4] = torch.randint(-2, 3, (n, len(range(1, d, 4))), generator=g).to(dtype)
    return x


def median_definition(x):
    ordered = x.sort(dim=0).values
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def closest_definition(x, center, count):
    """Per column, the mean of the `count` values closest to center, the smaller of two
    at the same distance first: the values ordered by (distance, value)."""
    ordered = x.sort(dim=0).values.double()
    distance = (ordered - center).abs()
    nearest = distance.sort(dim=0, stable=True).indices[:count]  # ties: the smaller value
    return ordered.gather(0, nearest).mean(dim=0)


# the four statistics, across more than one chunk of the numpy path's last steps

D = WINDOW_CHUNK + 2 * coordinates.COLUMN_BLOCK + 5  # two chunks, the second partial


@pytest.mark.parametrize("n", [4, 7])
def test_the_median_over_several_chunks(n, path):
    x = inputs(n, D, seed=n)
    assert torch.equal(coordinate_median(x), median_definition(x))


@pytest.mark.parametrize("n, trim", [(7, 2), (8, 1)])
def test_the_trimmed_mean_over_several_chunks(n, trim, path):
    x = inputs(n, D, seed=n)
    expected = x.sort(dim=0).values[trim:n - trim].mean(dim=0)
    torch.testing.assert_close(coordinate_trimmed_mean(x, trim), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n, count", [(7, 2), (8, 5), (9, 9)])
def test_the_window_around_the_median_over_several_chunks(n, count, path):
    x = inputs(n, D, seed=n)
    expected = closest_definition(x, median_definition(x), count)
    torch.testing.assert_close(coordinate_mean_around_median(x, count), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, trim, count", [(7, 1, 3), (8, 2, 6), (6, 0, 6)])
def test_the_window_around_the_trimmed_mean_over_several_chunks(n, trim, count, path):
    x = inputs(n, D, seed=n)
    center = x.sort(dim=0).values[trim:n - trim].mean(dim=0)
    expected = closest_definition(x, center, count)
    torch.testing.assert_close(coordinate_mean_around_trimmed_mean(x, trim, count), expected,
                               rtol=1e-12, atol=1e-12)


# small exact cases, every path (float32, float64 on CPU; bfloat16: torch)

COLUMN = [[5.0], [1.0], [4.0], [100.0], [2.0], [3.0]]  # sorted: 1 2 3 4 5 100


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_small_columns_by_hand(dtype, path):
    x = torch.tensor(COLUMN, dtype=dtype)
    assert coordinate_median(x).tolist() == [3.5]
    assert coordinate_median(x[:5]).tolist() == [4.0]  # 1 2 4 5 100
    assert coordinate_trimmed_mean(x, 1).tolist() == [3.5]
    assert coordinate_trimmed_mean(x, 2).tolist() == [3.5]
    assert coordinate_trimmed_mean(x, 0).tolist() == [115 / 6 if dtype == torch.float64
                                                      else float(torch.tensor(115 / 6, dtype=dtype))]
    assert coordinate_mean_around_median(x, 2).tolist() == [3.5]  # 3 and 4
    assert coordinate_mean_around_median(x, 3).tolist() == [3.0]  # 2 3 4: 2 before 5
    assert coordinate_mean_around_median(x, 4).tolist() == [3.5]  # 2 3 4 5
    # trimmed mean dropping 1 at each end: 3.5; the 2 closest: 3, 4; the 5 closest: 1..5
    assert coordinate_mean_around_trimmed_mean(x, 1, 2).tolist() == [3.5]
    assert coordinate_mean_around_trimmed_mean(x, 1, 5).tolist() == [3.0]
    assert coordinate_mean_around_trimmed_mean(x, 0, 1).tolist() == [5.0]  # mean 115/6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_each_column_has_its_own_centre(dtype, path):
    """Two columns far apart: a centre shared across columns (the band's mean over every
    value, 19.25) would pick 4 and 5 in the first column and 10 and 20 in the second."""
    x = torch.tensor([[5.0, 10.0], [1.0, 60.0], [4.0, 30.0], [100.0, 20.0], [2.0, 50.0],
                      [3.0, 40.0]], dtype=dtype)
    assert coordinate_mean_around_trimmed_mean(x, 1, 2).tolist() == [3.5, 35.0]  # 3.5, 35
    assert coordinate_mean_around_median(x, 2).tolist() == [3.5, 35.0]
    assert coordinate_trimmed_mean(x, 1).tolist() == [3.5, 35.0]
    assert coordinate_median(x).tolist() == [3.5, 35.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_selected_rows_only(dtype, path):
    x = torch.tensor(COLUMN, dtype=dtype)
    assert coordinate_mean_around_median(x, 1, torch.tensor([3, 0, 2])).tolist() == [5.0]
    assert coordinate_mean_around_median(x, 2, torch.tensor([3, 0, 2])).tolist() == [4.5]
    mask = torch.tensor([False, True, False, True, True, False])  # 1 100 2
    assert coordinate_mean_around_median(x, 1, mask).tolist() == [2.0]
    assert coordinate_mean_around_median(x, 2, torch.tensor([-1, -4])).tolist() == [3.5]


def test_rows_out_of_range_message(path):
    x = torch.tensor(COLUMN)
    with pytest.raises(IndexError, match=r"^selected rows must lie in -6 \.\. 5$"):
        coordinate_mean_around_median(x, 1, torch.tensor([0, 6]))
    with pytest.raises(IndexError, match=r"^selected rows must lie in -6 \.\. 5$"):
        coordinate_mean_around_median(x, 1, torch.tensor([-7]))
    with pytest.raises(ValueError, match="^0 values cannot drop 0 at each end$"):
        coordinate_mean_around_median(x, 1, torch.tensor([], dtype=torch.long))


# NaN among padded rows (9 to 128 values are sorted padded with +inf)

@pytest.mark.parametrize("n", [9, 10, 17, 100])
def test_nan_sorts_after_infinity_with_padded_sorts(n, path):
    x = inputs(n, 300, seed=n)
    x[0, 7], x[1, 7], x[2, 8] = math.nan, math.inf, math.nan
    x[:, 9] = math.inf
    ordered = sorted_coordinates(x)
    expected = x.sort(dim=0).values
    assert torch.equal(ordered.isnan(), expected.isnan())
    assert torch.equal(ordered.nan_to_num(), expected.nan_to_num())
    assert ordered[-1, 7].isnan() and ordered[-2, 7] == math.inf
    median = coordinate_median(x)
    assert torch.equal(median.nan_to_num(), median_definition(x).nan_to_num())
    trimmed = coordinate_trimmed_mean(x, 2)
    assert torch.isfinite(trimmed[7]) and torch.isfinite(trimmed[8])


def test_mean_closest_small_and_large_windows():
    x = torch.tensor(COLUMN, dtype=torch.float64)
    ordered = sorted_coordinates(x)
    center = torch.tensor([3.0], dtype=torch.float64)
    assert mean_closest(ordered, center, 1).tolist() == [3.0]
    assert mean_closest(ordered, center, 2).tolist() == [2.5]  # 2 before 4
    assert mean_closest(ordered, center, 4).tolist() == [2.5]  # 1 2 3 4
    assert mean_closest(ordered, center, 5).tolist() == [3.0]
    assert mean_closest(ordered, center, 6).tolist() == [115 / 6]
    assert mean_closest(ordered, center, 7).tolist() == [115 / 6]
    assert mean_around_median(ordered, 1).tolist() == [3.0]  # median 3.5: 3 before 4
    assert mean_around_median(ordered, 5).tolist() == [3.0]
    assert median_of_sorted(ordered).tolist() == [3.5]


def test_coordinate_statistic_puts_blocks_together():
    x = inputs(5, 2 * coordinates.COLUMN_BLOCK + 3, dtype=torch.float32)
    result = coordinates.coordinate_statistic(x, lambda ordered: ordered[-1] - ordered[0])
    assert torch.equal(result, x.max(dim=0).values - x.min(dim=0).values)


# through the registry: the rules that use them

@pytest.mark.parametrize("rule, statistic", [
    ("median", lambda x, f: median_definition(x)),
    ("trmean", lambda x, f: x.sort(dim=0).values[f:len(x) - f].mean(dim=0))])
def test_rules_built_on_the_statistics(rule, statistic, path):
    x = inputs(11, 500, seed=2)
    spec = registry.lookup("defense", rule).spec
    result = spec.aggregate(x, 3, **spec.options)
    vector = getattr(result, "vector", result)
    torch.testing.assert_close(vector, statistic(x, 3), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32])
def test_other_dtypes_sort_whole_columns_with_torch(dtype):
    x = (inputs(5, 9, seed=4) * 4).to(dtype)
    assert torch.equal(sorted_coordinates(x), x.sort(dim=0).values)
    assert torch.equal(coordinates.coordinate_statistic(x, lambda ordered: ordered[1]),
                       x.sort(dim=0).values[1])


def test_infinities_and_overflow_raise_no_numpy_warning(monkeypatch):
    """inf - inf (NaN, as in torch) and sums past float32's range (inf) are results, not
    errors: the numpy path reports nothing to the user."""
    import warnings
    monkeypatch.setattr(coordinates, "COMPILED", False)
    big = 3e38
    x = torch.tensor([[math.inf, big], [-math.inf, big], [-math.inf, big], [math.inf, big],
                      [1.0, big]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        around_median = coordinate_mean_around_median(x, 2)
        around_trimmed = coordinate_mean_around_trimmed_mean(x, 1, 3)
        trimmed = coordinate_trimmed_mean(x, 1)
    assert around_median[1] == around_trimmed[1] == trimmed[1] == math.inf
    assert trimmed[0].isnan()  # -inf + 1 + inf
