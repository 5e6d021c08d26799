"""Coordinate-wise building blocks shared by defenses (median, trimmed means, Phocas,
MeaMed, Bulyan): each coordinate's n values, sorted, block by block on CPU."""
from __future__ import annotations

import numpy as np
import torch

COLUMN_BLOCK = 4096  # columns per block where a kernel works block by block on CPU (in cache)
WINDOW_CHUNK = 4 * COLUMN_BLOCK  # columns per chunk of coordinate_mean_around_median's last
# steps (a multiple of COLUMN_BLOCK)


def coordinate_median(gradients: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median; for an even count, the mean of the two middle values.
    NaN counts as larger than +inf (see `sorted_coordinates`)."""
    if not _numpy_sorts(gradients):
        return median_of_sorted(gradients.sort(dim=0).values)
    return _by_sorted_rows(gradients, _median_of_rows)


def coordinate_trimmed_mean(gradients: torch.Tensor, trim: int) -> torch.Tensor:
    """Per coordinate, the mean of the values left once the `trim` smallest and the
    `trim` largest are dropped (NaN counts as larger than +inf)."""
    n = gradients.shape[0]
    if not _numpy_sorts(gradients):
        return gradients.sort(dim=0).values[trim:n - trim].mean(dim=0)
    return _by_sorted_rows(gradients, lambda rows: _trimmed_mean_of_rows(rows, trim))


def median_of_sorted(ordered: torch.Tensor) -> torch.Tensor:
    """The coordinate-wise median of values already sorted along dim 0."""
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# Coordinate-wise statistics sort each coordinate's n values. On CPU, numpy sorts; torch's
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


def coordinate_mean_around_median(gradients: torch.Tensor, count: int,
                                  selected: torch.Tensor | None = None) -> torch.Tensor:
    """mean_around_median over the sorted coordinates of gradients[selected] (all rows by
    default), without copying the selected rows out first. On CPU the window's values
    are summed first to last, then divided by `count`: the bits of mean_around_median
    (whose torch mean sums up to 17 values so, but for the last columns of a block of
    some widths), else equal to float rounding."""
    if not _numpy_sorts(gradients):
        chosen = gradients if selected is None else gradients[selected]
        return coordinate_statistic(chosen, lambda ordered: mean_around_median(ordered, count))
    picks = None if selected is None else selected.numpy()
    n = gradients.shape[0] if picks is None else len(picks)
    middle = n // 2
    if n - count <= count:
        return _by_sorted_rows(
            gradients, lambda rows: mean_around_median(torch.from_numpy(rows).T, count).numpy(),
            picks)
    # only the sorted columns low .. high + count - 1 matter (mean_around_median): copied
    # out transposed, chunk by chunk, each is a contiguous vector
    low, high = max(0, middle - count), min(n - count, middle)
    d = gradients.shape[1]
    result = np.empty(d, gradients.numpy().dtype)
    columns = np.empty((high + count - low, min(WINDOW_CHUNK, d)), result.dtype)
    for start, rows in _sorted_row_blocks(gradients, picks):
        offset, end = start % WINDOW_CHUNK, start + len(rows)
        np.copyto(columns[:, offset:offset + len(rows)], rows[:, low:high + count].T)
        if end % WINDOW_CHUNK == 0 or end == d:
            chunk = columns[:, :offset + len(rows)]
            result[end - chunk.shape[1]:end] = _window_mean(chunk, n % 2, middle - low,
                                                            high - low, count)
    return torch.from_numpy(result)


def _window_mean(columns: np.ndarray, odd: bool, middle: int, slides: int, count: int):
    """mean_around_median from the sorted values' rows low .. high + count - 1
    (`columns`, its rows counted from low): the window starts where the slides stop."""
    center = columns[middle] if odd else (columns[middle - 1] + columns[middle]) / 2
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which compares false as in torch
        slide = (columns[count:count + slides] - center) < (center - columns[:slides])
    start = slide.sum(axis=0, dtype=np.int16)  # summing int16 costs a fifth of intp
    flat = np.multiply(start, columns.shape[1], dtype=np.intp) + np.arange(columns.shape[1])
    total = columns.take(flat)
    for k in range(1, count):
        total += columns[k:].take(flat)
    total /= count
    return total


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


# The CPU forms of the statistics above work on `rows` (numpy [m, n]: row j holds one
# coordinate's n values in ascending order, a block of the buffer `_sorted_row_blocks`
# reuses). numpy and torch pay a fixed cost per row for an operation on a slice of short
# rows (rows[:, a:b], n = 51: 1-2 ms over d = 79,510, more than the mean's whole pass);
# column reads and BLAS products do not, so these kernels keep to those.

def _by_sorted_rows(gradients: torch.Tensor, statistic, selected=None) -> torch.Tensor:
    """statistic(rows) -> numpy [m] for each block of sorted rows, put together."""
    result = np.empty(gradients.shape[1], gradients.numpy().dtype)
    for start, rows in _sorted_row_blocks(gradients, selected):
        result[start:start + len(rows)] = statistic(rows)
    return torch.from_numpy(result)


def _median_of_rows(rows: np.ndarray) -> np.ndarray:
    n = rows.shape[1]
    if n % 2:
        return rows[:, n // 2]
    return (rows[:, n // 2 - 1] + rows[:, n // 2]) / 2


def _sum_of_rows(rows: np.ndarray) -> np.ndarray:
    """Each row's sum, as a product with a vector of ones (1 * x = x for every x)."""
    return rows @ np.ones(rows.shape[1], rows.dtype)


def _trimmed_mean_of_rows(rows: np.ndarray, trim: int) -> np.ndarray:
    n = rows.shape[1]
    return _sum_of_rows(rows[:, trim:n - trim]) / (n - 2 * trim)
