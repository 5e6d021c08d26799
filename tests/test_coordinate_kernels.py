"""The CPU kernels of benchmark.coordinates on both paths, compiled (numba) and numpy:
against whole-matrix torch sorts summed first to last, and against each other bit for
bit. Ties, NaN of either sign, infinities, -0.0, even and odd n, the smallest n, block
seams of both paths, selected rows; the sorting networks; the path without numba."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark import coordinates, coordinates_numba
from benchmark.coordinates import (COLUMN_BLOCK, coordinate_mean_around_median,
                                   coordinate_mean_around_trimmed_mean, coordinate_median,
                                   coordinate_trimmed_mean, median_of_sorted)

PATHS = ["compiled", "numpy"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param == "compiled" and not coordinates_numba.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(coordinates, "COMPILED", request.param == "compiled")
    return request.param


def awkward_inputs(n, dtype, seed=3, extra_columns=7):
    """[n, 2 blocks + extra_columns]: ties, duplicated values, NaN of either sign,
    infinities and -0.0, some at the block seams."""
    g = torch.Generator().manual_seed(seed)
    d = 2 * COLUMN_BLOCK + extra_columns
    x = torch.randint(-2, 3, (n, d), generator=g).to(dtype)  # ties everywhere
    x[:, ::3] = torch.randn(n, (d + 2) // 3, generator=g, dtype=dtype)
    x[:, 5::7] = x[0, 5::7]  # duplicated rows' values
    x[0, 10], x[-1, 4100], x[0, 8196], x[-1, 8197] = math.nan, math.inf, -math.inf, -math.nan
    x[:, 11] = math.nan
    x[: n // 2 + 1, 12] = math.inf
    x[:, 13] = -0.0
    x[: (n + 1) // 2, 14], x[n // 2:, 15] = -math.inf, -math.nan
    x[0, 130], x[-1, 127], x[n // 3, 128] = math.nan, math.inf, -math.inf  # compiled seams
    return x


def plain(x, trim=None):
    ordered = x.sort(dim=0).values  # NaN last, as numpy
    if trim is None:
        return median_of_sorted(ordered)
    return ordered[trim:x.shape[0] - trim].mean(dim=0)


def first_to_last_mean(rows):
    """The mean of rows (Tensor[k, d]), summed first to last in their dtype."""
    total = rows[0].clone()
    for row in rows[1:]:
        total += row
    return total / len(rows)


def window_mean(x, count, center_of, around_median=False):
    """The definition: per coordinate, the mean of the `count` sorted values closest to
    center_of(sorted values), summed first to last. The window starts where sliding it
    up stops paying, counted as mean_closest does, or around the median as
    mean_around_median does: it compares only the rows that can differ (which changes
    nothing unless the median is NaN)."""
    ordered = x.sort(dim=0).values
    n, count = len(ordered), min(count, len(ordered))
    center = center_of(ordered)
    low, high = (max(0, n // 2 - count), min(n - count, n // 2)) if around_median else \
        (0, n - count)
    slide = (ordered[low + count:high + count] - center) < (center - ordered[low:high])
    start = low + slide.sum(dim=0)
    return first_to_last_mean(torch.stack([ordered.gather(0, (start + k)[None])[0]
                                           for k in range(count)]))


def assert_same_bits(result, expected, message=None):
    assert result.dtype == expected.dtype and result.shape == expected.shape, message
    assert torch.equal(result.isnan(), expected.isnan()), message
    assert torch.equal(result.nan_to_num(), expected.nan_to_num()), message


def assert_close(result, expected):
    assert result.dtype == expected.dtype and result.shape == expected.shape
    assert torch.equal(result.isnan(), expected.isnan())
    tolerance = 1e-6 if expected.dtype == torch.float32 else 1e-13  # the summation order
    torch.testing.assert_close(result, expected, rtol=tolerance, atol=tolerance, equal_nan=True)


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 10, 51])
def test_median_matches_the_whole_sort_bit_for_bit(n, dtype, path):
    x = awkward_inputs(n, dtype)
    assert_same_bits(coordinate_median(x), plain(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, trim", [(1, 0), (2, 0), (3, 1), (4, 1), (10, 4), (11, 5), (51, 12),
                                     (51, 24)])
def test_trimmed_mean_sums_the_sorted_values_first_to_last(n, trim, dtype, path):
    x = awkward_inputs(n, dtype)
    result = coordinate_trimmed_mean(x, trim)
    assert_same_bits(result, first_to_last_mean(x.sort(dim=0).values[trim:n - trim]))
    assert_close(result, plain(x, trim))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 5, 10, 27, 51])
def test_windows_around_the_median_and_the_trimmed_mean(n, dtype, path):
    """Windows larger and smaller than half the values (meamed's, bulyan's), Phocas'."""
    x = awkward_inputs(n, dtype, seed=n)
    for count in sorted({1, 2, max(1, n // 3), n // 2 + 1, n - 1, n} - {0}):
        assert_same_bits(coordinate_mean_around_median(x, count),
                         window_mean(x, count, median_of_sorted, around_median=True),
                         ("median", count))
    for trim in sorted({0, (n - 1) // 4, (n - 1) // 2}):
        def trimmed_mean(ordered):
            return first_to_last_mean(ordered[trim:n - trim])
        assert_same_bits(coordinate_mean_around_trimmed_mean(x, trim, n - trim),
                         window_mean(x, n - trim, trimmed_mean), ("trimmed", trim))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d", [(51, 79), (51, 4096 + 129), (12, 1000), (7, 2 * COLUMN_BLOCK + 1),
                                  (30, 3 * COLUMN_BLOCK)])
def test_both_paths_give_the_same_bits(n, d, dtype, monkeypatch):
    if not coordinates_numba.AVAILABLE:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(n + d)
    x = awkward_inputs(n, dtype, seed=d, extra_columns=max(7, d - 2 * COLUMN_BLOCK))
    x = x[:, :d].contiguous()
    x[:, d // 2:] = torch.randn(n, d - d // 2, generator=g, dtype=dtype)
    selected = torch.randperm(n, generator=g)[:max(1, n - 4)]
    f = (n - 1) // 4
    rules = {
        "median": lambda: coordinate_median(x),
        "trimmed mean": lambda: coordinate_trimmed_mean(x, f),
        "meamed": lambda: coordinate_mean_around_median(x, n - f),
        "phocas": lambda: coordinate_mean_around_trimmed_mean(x, f, n - f),
        "bulyan": lambda: coordinate_mean_around_median(x, max(1, len(selected) - 2 * f),
                                                        selected),
    }
    for name, rule in rules.items():
        monkeypatch.setattr(coordinates, "COMPILED", True)
        compiled = rule()
        monkeypatch.setattr(coordinates, "COMPILED", False)
        assert_same_bits(compiled, rule(), name)


@pytest.mark.parametrize("n", list(range(1, 13)))
def test_the_sorting_networks_sort_every_zero_one_input(n):
    """Exhaustively by the 0-1 principle; pruned, a network still sorts its rows."""
    columns = (np.arange(2 ** n)[None, :] >> np.arange(n)[:, None]) & 1
    for first, last in [(0, n), ((n - 1) // 2, n // 2 + 1), (n // 3, n - n // 3)]:
        values = columns.copy()
        for a, b in zip(*coordinates_numba.sorting_network(n, first, last)):
            values[[a, b]] = np.sort(values[[a, b]], axis=0)
        assert np.array_equal(values[first:last], np.sort(columns, axis=0)[first:last])


@pytest.mark.parametrize("n", [13, 25, 27, 33, 51, 64, 70])
def test_the_sorting_networks_sort_random_inputs(n):
    values = np.random.default_rng(n).integers(-3, 4, (n, 5000))
    expected = np.sort(values, axis=0)
    for a, b in zip(*coordinates_numba.sorting_network(n, 0, n)):
        values[[a, b]] = np.sort(values[[a, b]], axis=0)
    assert np.array_equal(values, expected)
    full, median = (len(coordinates_numba.sorting_network(n, *band)[0])
                    for band in [(0, n), (n // 2, n // 2 + 1)])
    assert median < full


def test_selected_rows_as_indices_negative_indices_or_a_mask(path):
    x = awkward_inputs(6, torch.float32)
    expected = coordinate_mean_around_median(x[[0, 2, 5]], 2)
    for selected in (torch.tensor([0, 2, 5]), torch.tensor([0, -4, -1]),
                     torch.tensor([True, False, True, False, False, True])):
        assert_same_bits(coordinate_mean_around_median(x, 2, selected), expected)


def test_rows_out_of_range_and_impossible_trims_are_refused(path):
    x = awkward_inputs(5, torch.float32)
    for selected in ([0, 5], [-6, 1]):
        with pytest.raises(IndexError):
            coordinate_mean_around_median(x, 2, torch.tensor(selected))
    with pytest.raises(ValueError):
        coordinate_trimmed_mean(x, 3)
    with pytest.raises(ValueError):
        coordinate_mean_around_median(x, 0)


def test_other_dtypes_and_views_take_the_torch_path(path):
    x = awkward_inputs(9, torch.float64)
    assert_close(coordinate_trimmed_mean(x.to(torch.bfloat16), 2), plain(x.to(torch.bfloat16), 2))
    view = x.T.contiguous().T  # column-major: numpy reads it through strides
    assert_same_bits(coordinate_median(view), plain(x))
    assert_same_bits(coordinate_trimmed_mean(view, 2), coordinate_trimmed_mean(x, 2))


def test_each_block_reuses_one_buffer():
    x = awkward_inputs(5, torch.float32)
    buffers = {rows.__array_interface__["data"][0]
               for _, rows in coordinates._sorted_row_blocks(x)}
    assert len(buffers) == 1


def test_warm_up_compiles_both_dtypes():
    if not coordinates_numba.AVAILABLE:
        pytest.skip("numba is not installed")
    coordinates_numba.warm_up()
    compiled_for = {signature[0].dtype.name
                    for signature in coordinates_numba._statistic_by_blocks.signatures}
    assert compiled_for == {"int32", "int64"}


def test_without_numba_the_numpy_path_serves():
    script = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from benchmark import coordinates, coordinates_numba\n"
        "assert not coordinates.COMPILED and not coordinates_numba.AVAILABLE\n"
        "coordinates_numba.warm_up()\n"
        "x = torch.tensor([[1.0, float('nan')], [3.0, 2.0], [2.0, 1.0], [9.0, -1.0]])\n"
        "assert coordinates.coordinate_median(x).tolist() == [2.5, 1.5]\n"
        "assert coordinates.coordinate_trimmed_mean(x, 1).tolist() == [2.5, 1.5]\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
