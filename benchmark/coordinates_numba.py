"""Compiled CPU kernels (numba) for the coordinate-wise statistics of benchmark.coordinates.

Block by block of columns, each selected row's slice is copied into a small buffer that
stays in cache, as integer sort keys; a sorting network (Batcher's odd-even merge sort,
pruned to the sorted positions the statistic reads) then sorts every column at once:
each comparator is a min and a max of two buffer rows, vectorised across the columns.

Integer keys instead of floats: a float min/max that keeps NaN last and both signed
zeros needs compares and blends, and LLVM turns `row[j] = a if a < b else b` into
masked stores, many times slower on x86. The key of a float's bits is the bits with the
magnitude bits flipped for a negative value: ascending keys are ascending floats, -0.0
just before +0.0, and every NaN becomes one quiet NaN whose key is the largest. Keys are
decoded back to floats for the rows the statistic reads.

Sums run over the sorted values first to last, from -0.0 (the exact additive identity),
then divide by the count, in the input's dtype; `benchmark.coordinates`' numpy path
computes the same bits.
"""
from __future__ import annotations

import functools

import numpy as np

try:
    from numba import njit
    from numba.extending import overload
except ImportError:  # the numpy path of benchmark.coordinates serves instead
    njit = None

AVAILABLE = njit is not None

MEDIAN, TRIMMED_MEAN, MEAN_AROUND_MEDIAN, MEAN_AROUND_TRIMMED_MEAN = range(4)
BUFFER_BYTES = 32 * 1024  # the key buffer of one block of columns: an L1 data cache
KEY_TYPES = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}


def compiled(function):
    return njit(cache=True, nogil=True)(function) if AVAILABLE else function


def key_constants(keys: np.ndarray) -> tuple[int, int, int, int]:
    """(sign shift, magnitude mask, +inf's bits, the quiet NaN's bits) for sort keys of
    the type of `keys`: int32 for float32 values, int64 for float64."""
    return _key_constants(keys.dtype.itemsize * 8)


def _key_constants(bits: int) -> tuple[int, int, int, int]:
    mantissa = {32: 23, 64: 52}[bits]
    magnitude = (1 << bits - 1) - 1
    infinity = magnitude >> mantissa << mantissa
    return bits - 1, magnitude, infinity, infinity | 1 << mantissa - 1


if AVAILABLE:
    @overload(key_constants)
    def _key_constants_when_compiled(keys):
        """Compile-time constants: a shift by a constant vectorises over 32-bit lanes."""
        constants = _key_constants(keys.dtype.bitwidth)
        return lambda keys: constants


@functools.lru_cache(maxsize=None)
def sorting_network(n: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper): the comparators, in order, of Batcher's odd-even merge sort of n
    values that the sorted positions first .. last - 1 depend on. The network for the
    next power of two sorts n values padded with +inf: a comparator that touches the
    padding never moves it, so those are left out."""
    size = 1 << max(n - 1, 0).bit_length()
    comparators = []
    merged = 1
    while merged < size:
        distance = merged
        while distance >= 1:
            for group in range(distance % merged, size - distance, 2 * distance):
                for i in range(min(distance, size - group - distance)):
                    a, b = group + i, group + i + distance
                    if a // (2 * merged) == b // (2 * merged) and b < n:
                        comparators.append((a, b))
            distance //= 2
        merged *= 2
    needed, kept = set(range(first, last)), []
    for a, b in reversed(comparators):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    lower = np.array([a for a, _ in kept], dtype=np.int64)
    upper = np.array([b for _, b in kept], dtype=np.int64)
    return lower, upper


def block_width(rows: int, dtype: np.dtype) -> int:
    """Columns per block: the largest power of two from 128 to 1024 whose key buffer fits
    BUFFER_BYTES, else 128 (narrower, each comparator's loop pays its fixed cost over too
    few columns: 64 costs half as much again as 128 at n = 51)."""
    width = 1024
    while width > 128 and rows * width * dtype.itemsize > BUFFER_BYTES:
        width //= 2
    return width


def parameters(statistic: int, k: int, trim: int = 0, count: int = 0) -> dict:
    """The parameters of a statistic over k sorted values: `trim`, the window's `count`
    (at most k), the rows low .. high - 1 whose slides decide where the window starts
    (mean_around_median's band), and the rows first .. last - 1 the statistic reads."""
    if k < 1 or not 0 <= trim <= (k - 1) // 2:
        raise ValueError(f"{k} values cannot drop {trim} at each end")
    if statistic in (MEAN_AROUND_MEDIAN, MEAN_AROUND_TRIMMED_MEAN) and count < 1:
        raise ValueError(f"a window of {count} values")
    middle, count = k // 2, min(count, k)
    low = high = 0
    if statistic == MEDIAN:
        first, last = middle - 1 + k % 2, middle + 1
    elif statistic == TRIMMED_MEAN:
        first, last = trim, k - trim
    elif statistic == MEAN_AROUND_MEDIAN:
        low, high = max(0, middle - count), min(k - count, middle)
        first, last = low, high + count
    else:
        low, high, first, last = 0, k - count, 0, k
    return dict(trim=trim, count=count, low=low, high=high, first=first, last=last)


def statistic_by_blocks(values: np.ndarray, rows: np.ndarray, statistic: int, *, trim: int,
                        count: int, low: int, high: int, first: int, last: int) -> np.ndarray:
    """A statistic of each column of values[rows] (numpy [n, d], float32 or float64), as
    numpy [d]: MEDIAN, TRIMMED_MEAN, MEAN_AROUND_MEDIAN or MEAN_AROUND_TRIMMED_MEAN, with
    its `parameters`. `rows` must hold valid row numbers: nothing checks bounds here."""
    k = len(rows)
    lower, upper = sorting_network(k, first, last)
    values = np.ascontiguousarray(values)
    key_type = KEY_TYPES[values.dtype]
    keys = np.empty((k, block_width(k, values.dtype)), key_type)
    result = np.empty(values.shape[1], values.dtype)
    _statistic_by_blocks(values.view(key_type), rows.astype(np.int64, copy=False), lower, upper,
                         statistic, trim, count, low, high, first, last, keys,
                         keys.view(values.dtype), result)
    return result


def warm_up() -> None:
    """Compiles every kernel for float32 and float64, or loads them from numba's disk
    cache (much cheaper), so that a worker's first aggregation does not pay for it."""
    if not AVAILABLE:
        return
    for dtype in KEY_TYPES:
        values = np.arange(12, dtype=dtype).reshape(4, 3)
        for statistic in (MEDIAN, TRIMMED_MEAN, MEAN_AROUND_MEDIAN, MEAN_AROUND_TRIMMED_MEAN):
            statistic_by_blocks(values, np.arange(4), statistic,
                                **parameters(statistic, 4, trim=1, count=3))


@compiled
def _statistic_by_blocks(bits, selected, lower, upper, statistic, trim, count, low, high,
                         first, last, keys, floats, result):
    """statistic_by_blocks, block by block; `keys` and `floats` view one buffer."""
    k, d, width = len(selected), bits.shape[1], keys.shape[1]
    center = np.empty(width, floats.dtype)
    bounds = np.empty((2, width), keys.dtype)
    band = np.arange(low, high + count).astype(keys.dtype)  # row numbers, typed as `bounds`
    for start in range(0, d, width):
        columns = min(width, d - start)
        _encode(bits, selected, start, columns, keys)
        _sort(keys, lower, upper, columns)
        _decode(keys, first, last, columns)
        out = result[start:start + columns]
        if statistic == MEDIAN:
            _median(floats, k, columns, out)
        elif statistic == TRIMMED_MEAN:
            _mean_of_rows(floats, trim, k - trim, columns, out)
        else:
            if statistic == MEAN_AROUND_MEDIAN:
                _median(floats, k, columns, center[:columns])
            else:
                _mean_of_rows(floats, trim, k - trim, columns, center[:columns])
            _window_mean(floats, center, band, high - low, count, columns, bounds, out)


@compiled
def _encode(bits, selected, start, columns, keys):
    shift, magnitude, infinity, nan_key = key_constants(keys)
    for i in range(len(selected)):
        source = bits[selected[i], start:start + columns]
        target = keys[i]
        for j in range(columns):
            value = source[j]
            target[j] = nan_key if (value & magnitude) > infinity \
                else value ^ ((value >> shift) & magnitude)


@compiled
def _sort(keys, lower, upper, columns):
    for c in range(len(lower)):
        a_row, b_row = keys[lower[c]], keys[upper[c]]
        for j in range(columns):
            a, b = a_row[j], b_row[j]
            a_row[j] = min(a, b)
            b_row[j] = max(a, b)


@compiled
def _decode(keys, first, last, columns):
    """Keys back to the floats' bits, in place, for the rows first .. last - 1."""
    shift, magnitude, _, _ = key_constants(keys)
    for r in range(first, last):
        row = keys[r]
        for j in range(columns):
            row[j] ^= (row[j] >> shift) & magnitude


@compiled
def _median(floats, k, columns, out):
    middle = k // 2
    if k % 2:
        out[:] = floats[middle, :columns]
        return
    below, above = floats[middle - 1], floats[middle]
    for j in range(columns):
        out[j] = (below[j] + above[j]) / 2


@compiled
def _mean_of_rows(floats, first, last, columns, out):
    """The mean of the rows first .. last - 1, summed first to last."""
    out[:] = -0.0
    for r in range(first, last):
        row = floats[r]
        for j in range(columns):
            out[j] += row[j]
    for j in range(columns):
        out[j] /= last - first


@compiled
def _window_mean(floats, center, band, slides, count, columns, bounds, out):
    """The mean of the `count` values from each column's window start, summed first to
    last. The window starts at the band's first row plus the number of its first
    `slides` rows r where sliding the window past r pays. Each row of the band (its row
    numbers, of the keys' type: compared with `bounds`, they fill 32-bit lanes) adds its
    value where it lies in the window, else -0.0 (which changes nothing); the rows from
    band[slides] to band[count - 1] lie in every window."""
    starts, ends = bounds[0, :columns], bounds[1, :columns]
    starts[:] = band[0]
    for r in band[:slides]:
        below, above = floats[r], floats[r + count]
        for j in range(columns):
            starts[j] += (above[j] - center[j]) < (center[j] - below[j])
    for j in range(columns):
        ends[j] = starts[j] + count
    out[:] = -0.0
    nothing = out[0]
    for position, r in enumerate(band):
        row = floats[r]
        if slides <= position < count:
            for j in range(columns):
                out[j] += row[j]
            continue
        for j in range(columns):
            value = row[j]
            out[j] += value if (starts[j] <= r) & (r < ends[j]) else nothing
    for j in range(columns):
        out[j] /= count
