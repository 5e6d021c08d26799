"""The CPU row-block kernels of benchmark.coordinates (coordinate_median,
coordinate_trimmed_mean) against the plain whole-matrix torch forms: ties, NaN of either
sign, infinities, even and odd n, the smallest n, block seams."""
import math

import pytest
import torch

from benchmark import coordinates
from benchmark.coordinates import COLUMN_BLOCK, coordinate_median, coordinate_trimmed_mean, \
    median_of_sorted


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
    return x


def plain(x, trim=None):
    ordered = x.sort(dim=0).values  # NaN last, as numpy
    if trim is None:
        return median_of_sorted(ordered)
    return ordered[trim:x.shape[0] - trim].mean(dim=0)


def assert_same(result, expected, dtype):
    assert result.dtype == dtype and result.shape == expected.shape
    assert torch.equal(result.isnan(), expected.isnan())
    tolerance = 1e-6 if dtype == torch.float32 else 1e-13  # only the summation order differs
    torch.testing.assert_close(result, expected, rtol=tolerance, atol=tolerance, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 10, 51])
def test_median_matches_the_whole_sort_bit_for_bit(n, dtype):
    x = awkward_inputs(n, dtype)
    result, expected = coordinate_median(x), plain(x)
    assert torch.equal(result.isnan(), expected.isnan())
    assert torch.equal(result.nan_to_num(), expected.nan_to_num())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, trim", [(1, 0), (2, 0), (3, 1), (4, 1), (10, 4), (11, 5), (51, 12),
                                     (51, 24)])
def test_trimmed_mean_matches_the_whole_sort(n, trim, dtype):
    x = awkward_inputs(n, dtype)
    assert_same(coordinate_trimmed_mean(x, trim), plain(x, trim), dtype)


def test_other_dtypes_and_views_take_the_torch_path():
    x = awkward_inputs(9, torch.float64)
    assert_same(coordinate_trimmed_mean(x.to(torch.bfloat16), 2),
                plain(x.to(torch.bfloat16), 2), torch.bfloat16)
    view = x.T.contiguous().T  # column-major: numpy reads it through strides
    assert torch.equal(coordinate_median(view).nan_to_num(), plain(x).nan_to_num())


def test_each_block_reuses_one_buffer():
    x = awkward_inputs(5, torch.float32)
    buffers = {rows.__array_interface__["data"][0]
               for _, rows in coordinates._sorted_row_blocks(x)}
    assert len(buffers) == 1
