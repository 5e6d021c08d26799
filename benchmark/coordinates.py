"""Coordinate-wise building blocks shared by defenses (median, trimmed means, Phocas,
MeaMed, Bulyan): each coordinate's n values, sorted, block by block on CPU.

Definitions: NaN sorts after +inf; the median of an even count is the mean of the two
middle values; a mean of sorted values (the trimmed mean, the window of the `count`
values closest to a center) sums them first to last in the input's dtype, then divides
by their count. On CPU (float32, float64) the compiled kernels of
benchmark.coordinates_numba compute the statistics; without numba (or with COMPILED set
to False), numpy sorts and computes them, to the same bits. Elsewhere (CUDA, other
dtypes) torch sorts the whole matrix and its reductions sum in their own order.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark import coordinates_numba as compiled_kernels
from benchmark.coordinates_numba import (MEAN_AROUND_MEDIAN, MEAN_AROUND_TRIMMED_MEAN, MEDIAN,
                                         TRIMMED_MEAN)

COLUMN_BLOCK = 4096  # columns per block where a kernel works block by block on CPU (in cache)
WINDOW_CHUNK = 4 * COLUMN_BLOCK  # columns per chunk of the numpy statistics' last steps (a
# multiple of COLUMN_BLOCK)
COMPILED = compiled_kernels.AVAILABLE  # False: the numpy path, also the one without numba


def coordinate_median(gradients: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median; for an even count, the mean of the two middle values.
    NaN counts as larger than +inf (see `sorted_coordinates`)."""
    if not _numpy_sorts(gradients):
        return median_of_sorted(gradients.sort(dim=0).values)
    return _on_cpu(gradients, MEDIAN)


def coordinate_trimmed_mean(gradients: torch.Tensor, trim: int) -> torch.Tensor:
    """Per coordinate, the mean of the values left once the `trim` smallest and the
    `trim` largest are dropped (NaN counts as larger than +inf)."""
    n = gradients.shape[0]
    if not _numpy_sorts(gradients):
        return gradients.sort(dim=0).values[trim:n - trim].mean(dim=0)
    return _on_cpu(gradients, TRIMMED_MEAN, trim=trim)


def coordinate_mean_around_median(gradients: torch.Tensor, count: int,
                                  selected: torch.Tensor | None = None) -> torch.Tensor:
    """mean_around_median over the sorted coordinates of gradients[selected] (all rows by
    default), without copying the selected rows out first."""
    if not _numpy_sorts(gradients):
        chosen = gradients if selected is None else gradients[selected]
        return coordinate_statistic(chosen, lambda ordered: mean_around_median(ordered, count))
    return _on_cpu(gradients, MEAN_AROUND_MEDIAN, selected, count=count)


def coordinate_mean_around_trimmed_mean(gradients: torch.Tensor, trim: int,
                                        count: int) -> torch.Tensor:
    """Per coordinate, the mean of the `count` values closest to the trimmed mean that
    drops `trim` values at each end (mean_closest's window and ties: Phocas)."""
    n = gradients.shape[0]
    if not _numpy_sorts(gradients):
        return coordinate_statistic(
            gradients, lambda ordered: mean_closest(ordered, ordered[trim:n - trim].mean(dim=0),
                                                    count))
    return _on_cpu(gradients, MEAN_AROUND_TRIMMED_MEAN, trim=trim, count=count)


def median_of_sorted(ordered: torch.Tensor) -> torch.Tensor:
    """The coordinate-wise median of values already sorted along dim 0."""
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# The numpy path, sorted_coordinates and coordinate_statistic sort with numpy on CPU: torch's
# CPU sort along the short axis of an (n, d) tensor is about 10 times slower, and numpy's
# along axis 0 sorts one strided column at a time. Copying a block of COLUMN_BLOCK columns
# transposed (its columns become contiguous rows, the block stays in cache) and sorting
# the rows is about 1.4 times faster (n = 51, d = 79,510, one thread); reusing one buffer
# for every block instead of a fresh array each saves about a fifth more.


def _numpy_sorts(gradients: torch.Tensor) -> bool:
    return gradients.device.type == "cpu" and gradients.dtype in (torch.float32, torch.float64)


def _sorted_row_blocks(gradients: torch.Tensor, selected: np.ndarray | None = None):
    """(start column, rows): numpy [m, k], row j = column start + j's values in
    ascending order (of the rows `selected`, all k = n by default); each block is a view
    of one buffer, overwritten by the next."""
    values = gradients.numpy()
    d = values.shape[1]
    k = values.shape[0] if selected is None else len(selected)
    buffer = np.full((min(COLUMN_BLOCK, d), _padded_width(k)), np.inf, values.dtype)
    for start in range(0, d, COLUMN_BLOCK):
        rows = buffer[:min(COLUMN_BLOCK, d - start)]
        columns = slice(start, start + len(rows))
        block = values[:, columns] if selected is None else values[selected, columns]
        np.copyto(rows[:, :k], block.T)
        rows.sort(axis=1)
        if k < rows.shape[1] and np.isnan(rows[:, -1]).any():  # NaN sorts after the padding
            rows[:, k:] = np.inf
            np.copyto(rows[:, :k], block.T)
            rows[:, :k].sort(axis=1)
        yield start, rows[:, :k]


def _padded_width(k: int) -> int:
    """numpy's vectorized sort of a short row costs about 1.6 times as much for 27 values
    (n = 51, f = 12: Bulyan's selection) as for 32, 25 % more for 51 than for 64: rows of
    9 to 128 values are padded with +inf to a power of two (sorted last, then left out;
    a block holding NaN, which sorts after +inf, is sorted again unpadded)."""
    return 1 << (k - 1).bit_length() if 8 < k <= 128 else k


def _sorted_blocks(gradients: torch.Tensor):
    """(start column, Tensor[n, m] of m columns sorted along dim 0), block by block."""
    if not _numpy_sorts(gradients):
        yield 0, gradients.sort(dim=0).values
        return
    for start, rows in _sorted_row_blocks(gradients):
        yield start, torch.from_numpy(rows).T


def sorted_coordinates(gradients: torch.Tensor) -> torch.Tensor:
    """Each coordinate's values in ascending order (Tensor[n, d]). NaN sorts after +inf
    (numpy and torch agree), so at most f non-finite entries per coordinate land among
    the f largest or smallest."""
    if not _numpy_sorts(gradients):
        return gradients.sort(dim=0).values
    ordered = torch.empty_like(gradients)
    for start, block in _sorted_blocks(gradients):
        ordered[:, start:start + block.shape[1]] = block
    return ordered


def coordinate_statistic(gradients: torch.Tensor, statistic) -> torch.Tensor:
    """statistic(ordered) -> Tensor[m] for each block `ordered` (Tensor[n, m]) of the
    coordinates sorted along dim 0 (as by `sorted_coordinates`), put together as a
    Tensor[d]: the sorted matrix is never written out whole."""
    result = gradients.new_empty(gradients.shape[1])
    for start, block in _sorted_blocks(gradients):
        result[start:start + block.shape[1]] = statistic(block)
    return result


def mean_closest(ordered: torch.Tensor, center: torch.Tensor, count: int) -> torch.Tensor:
    """Per coordinate, the mean of the `count` values closest to `center`.

    `ordered` comes from `sorted_coordinates`; between two values at the same distance
    the smaller one wins, so the result does not depend on the order of the rows.
    The `count` closest values form a window of the sorted column starting at the
    number of positions s where sliding the window from s to s + 1 does not lose:
    slide(s) = ordered[s + count] - center < center - ordered[s]. That predicate is
    monotone in s (true, then false), so with n - count <= count the window holds the
    middle rows n - count .. count - 1 and, of each pair (ordered[r], ordered[r + count])
    for r < n - count, exactly one: the upper one iff slide(r).
    """
    n = ordered.shape[0]
    extra = n - count
    if extra <= 0:
        return ordered.mean(dim=0)
    low, high = ordered[:extra], ordered[count:]
    slide = (high - center) < (center - low)
    if extra > count:  # a small window (bulyan's): pick its rows
        window = slide.sum(dim=0) + torch.arange(count, device=ordered.device)[:, None]
        return ordered.gather(0, window).mean(dim=0)
    return (torch.where(slide, high, low).sum(dim=0) + ordered[extra:count].sum(dim=0)) / count


def mean_around_median(ordered: torch.Tensor, count: int) -> torch.Tensor:
    """mean_closest(ordered, median_of_sorted(ordered), count), faster for a window
    smaller than half the rows (bulyan's): the median lies between rows m - 1 and m
    (m = n // 2), so slide(r) holds for r < m - count (the rows r..m - 1 may also all
    equal the median; then both windows hold `count` copies of it) and fails for r >= m;
    only the rows in between are compared."""
    n = ordered.shape[0]
    extra, center = n - count, median_of_sorted(ordered)
    if extra <= count:
        return mean_closest(ordered, center, count)
    low, high = max(0, n // 2 - count), min(extra, n // 2)
    slide = (ordered[low + count:high + count] - center) < (center - ordered[low:high])
    window = slide.sum(dim=0) + torch.arange(low, low + count, device=ordered.device)[:, None]
    return ordered.gather(0, window).mean(dim=0)




# The CPU statistics: both paths take the same parameters (coordinates_numba.parameters);
# the numpy one works on the sorted rows `_sorted_row_blocks` yields, the compiled one
# sorts by itself.

def _on_cpu(gradients: torch.Tensor, statistic: int, selected: torch.Tensor | None = None, *,
            trim: int = 0, count: int = 0) -> torch.Tensor:
    """MEDIAN, TRIMMED_MEAN, MEAN_AROUND_MEDIAN or MEAN_AROUND_TRIMMED_MEAN of the sorted
    coordinates of gradients[selected] (a float32 or float64 CPU tensor; `selected`: row
    indices or a mask, all rows by default)."""
    n = gradients.shape[0]
    if selected is None:
        rows = np.arange(n)
    elif selected.dtype == torch.bool:
        rows = np.flatnonzero(selected.numpy())
    else:
        rows = selected.numpy().astype(np.int64)
        rows[rows < 0] += n
    if len(rows) and not (0 <= rows.min() and rows.max() < n):
        raise IndexError(f"selected rows must lie in -{n} .. {n - 1}")
    parameters = compiled_kernels.parameters(statistic, len(rows), trim, count)
    if COMPILED:
        return torch.from_numpy(compiled_kernels.statistic_by_blocks(
            gradients.numpy(), rows, statistic, **parameters))
    return torch.from_numpy(_numpy_statistic(gradients, rows, statistic, **parameters))


def _numpy_statistic(gradients: torch.Tensor, rows: np.ndarray, statistic: int, *, trim: int,
                     count: int, low: int, high: int, first: int, last: int) -> np.ndarray:
    """coordinates_numba.statistic_by_blocks in numpy: the sorted rows first .. last - 1
    of each block, copied out transposed chunk by chunk (each a contiguous vector), then
    the same steps, each over whole vectors."""
    d, k = gradients.shape[1], len(rows)
    result = np.empty(d, gradients.numpy().dtype)
    band = np.empty((last - first, min(WINDOW_CHUNK, d)), result.dtype)
    for start, sorted_rows in _sorted_row_blocks(gradients, rows):
        offset, end = start % WINDOW_CHUNK, start + len(sorted_rows)
        np.copyto(band[:, offset:offset + len(sorted_rows)], sorted_rows[:, first:last].T)
        if end % WINDOW_CHUNK and end != d:
            continue
        chunk = band[:, :offset + len(sorted_rows)]  # sorted row r is chunk[r - first]
        trimmed = slice(trim - first, k - trim - first)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as in torch
            if statistic == MEDIAN:
                value = _median_of_rows(chunk, k, first)
            elif statistic == TRIMMED_MEAN:
                value = _mean_of_rows(chunk[trimmed])
            else:
                center = (_median_of_rows(chunk, k, first) if statistic == MEAN_AROUND_MEDIAN
                          else _mean_of_rows(chunk[trimmed]))
                value = _window_mean(chunk[low - first:high + count - first], center,
                                     high - low, count)
        result[end - chunk.shape[1]:end] = value
    return result


def _median_of_rows(rows: np.ndarray, k: int, first: int) -> np.ndarray:
    middle = k // 2 - first
    if k % 2:
        return rows[middle]
    return (rows[middle - 1] + rows[middle]) / 2


def _mean_of_rows(rows: np.ndarray) -> np.ndarray:
    """The rows' mean, summed first to last."""
    total = rows[0].copy()
    for row in rows[1:]:
        total += row
    total /= len(rows)
    return total


def _window_mean(rows: np.ndarray, center: np.ndarray, slides: int, count: int) -> np.ndarray:
    """The mean of `count` consecutive rows (from the band's first), summed first to
    last, starting where the slides stop: `slides` compares, as in mean_around_median."""
    slide = (rows[count:count + slides] - center) < (center - rows[:slides])
    start = slide.sum(axis=0, dtype=np.int16)  # summing int16 costs a fifth of intp
    flat = np.multiply(start, rows.shape[1], dtype=np.intp) + np.arange(rows.shape[1])
    total = rows.take(flat)
    for k in range(1, count):
        total += rows[k:].take(flat)
    total /= count
    return total
