"""Distance-based building blocks shared by defenses (Krum, Multi-Krum, Bulyan, MDA,
NNM, ...): pairwise squared distances from one Gram matrix, row selections and the
Krum family."""
from __future__ import annotations

import math
import re
import torch

from benchmark.aggregated import Aggregated
from benchmark.coordinates import COLUMN_BLOCK


def pairwise_sq_distances(gradients: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows (float64 [n, n]), from one Gram matrix:
    see `distances_and_finite`. Rows with a non-finite entry are infinitely far from
    every other row (and at distance 0 from themselves)."""
    return distances_and_finite(gradients)[0]



# Distances from a float32 Gram matrix. A dot product of K float32 terms, summed in any
# order (a BLAS kernel's blocking, FMA or not), is off by at most
# gamma_K * sum_k |y_ik y_jk| <= gamma_K ||y_i|| ||y_j||, gamma_K = K u / (1 - K u), u = 2^-24
# (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5). Chunks of
# GRAM_CHUNK coordinates, summed in float64, keep K = GRAM_CHUNK whatever d is. Then
# D_ij = G_ii + G_jj - 2 G_ij is off by at most FLOAT32_GRAM_ERROR (||y_i|| + ||y_j||)^2:
# gamma_K, plus 2u for rounding the centred rows y = x - x_r, plus 1% for the float64
# steps (chunk sums, the formula, ||y||^2 read from the rounded diagonal).
GRAM_CHUNK = 1024
_U32 = 2.0 ** -24
FLOAT32_GRAM_ERROR = 1.01 * (GRAM_CHUNK * _U32 / (1 - GRAM_CHUNK * _U32) + 2 * _U32)
# The float32 result is used only where that bound is within DISTANCE_TOLERANCE of
# max(D_ij, the median pairwise distance); otherwise the float64 Gram matrix is used.
DISTANCE_TOLERANCE = 2e-3
# Below this many entries the float64 Gram matrix is as fast (the check costs ~0.2 ms).
FLOAT32_GRAM_MIN_ENTRIES = 2 ** 19


def distances_and_finite(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distances float64 [n, n], Bool[n] finite rows), from one Gram matrix.

    float64 input, a small one, or float32 where float32 matrix products may be rounded
    to TF32 or bfloat16: the float64 Gram matrix; rows with a non-finite entry are infinitely far
    from every other row. float32 input whose entries are all finite: a float32 Gram
    matrix (the float64 one, with its conversion, costs about twice as much on CPU) with
    the guarantee |D_ij - exact| <= DISTANCE_TOLERANCE * max(D_ij, median off-diagonal
    D), checked from the bound above: first of the rows themselves (one matrix product);
    if the rows lie far from the origin compared with their distances, of the rows minus
    the row of smallest median distance (one more pass); else in float64. Each entry
    depends on its pair of rows (and on the centre row, chosen by value) only, so row
    order changes nothing (barring distinct rows tied on their median distance).
    """
    if (gradients.dtype == torch.float32 and gradients.numel() >= FLOAT32_GRAM_MIN_ENTRIES
            and _exact_float32_products(gradients.device)):
        distances = _float32_distances(gradients)
        if distances is not None:
            return distances, torch.ones(len(gradients), dtype=torch.bool,
                                         device=gradients.device)
    gram, finite = gram_matrix(gradients)
    distances = _distances_from_gram(gram)
    # NaN between finite rows: float64 overflow of absurdly large values, also infinitely far
    distances.masked_fill_(~(finite[:, None] & finite[None, :]) | distances.isnan(), math.inf)
    distances.fill_diagonal_(0)
    return distances, finite


def _exact_float32_products(device: torch.device) -> bool:
    if torch.get_float32_matmul_precision() != "highest":
        return False
    cuda = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")
    return device.type != "cuda" or cuda in ("none", "ieee")


def _distances_from_gram(gram: torch.Tensor) -> torch.Tensor:
    sq_norms = gram.diagonal()
    distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * gram).clamp_min_(0)
    return distances.fill_diagonal_(0)


# The Gram matrix is symmetric: only the blocks on and below the diagonal are computed,
# GRAM_BLOCK_COLUMNS columns at a time, then mirrored: at n = 51 on one CPU thread (MKL),
# about 0.8 of the time of x @ x.T (one product over all chunks: 1.1). Each operand of
# each product has at least GRAM_MIN_ROWS rows (extended upwards, recomputing a few
# entries): BLAS may sum thinner products in another order, and every entry must be
# computed alike wherever its rows sit, so that row order changes nothing.
GRAM_BLOCK_COLUMNS = 32
GRAM_MIN_ROWS = 16


def _gram_blocks(n: int) -> list[tuple[int, int, int]]:
    """(first row, first column, end column) of each product: rows first: of the Gram
    matrix, columns first column:end column."""
    low = max(0, n - GRAM_MIN_ROWS)
    return [(min(start, low), min(start, low), min(start + GRAM_BLOCK_COLUMNS, n))
            for start in range(0, n, GRAM_BLOCK_COLUMNS)]


def _chunked_gram(rows: torch.Tensor) -> torch.Tensor:
    """The float32 Gram matrix of `rows`, over chunks of GRAM_CHUNK columns summed in
    float64 (one block column at a time, see _gram_blocks)."""
    n, d = rows.shape
    gram = rows.new_empty((n, n), dtype=torch.float64)
    whole = d - d % GRAM_CHUNK
    chunks = rows[:, :whole].reshape(n, -1, GRAM_CHUNK).transpose(0, 1)
    rest = rows[:, whole:]
    for first, start, end in _gram_blocks(n):
        block = gram[first:, start:end]
        if whole:
            products = torch.bmm(chunks[:, first:], chunks[:, start:end].transpose(1, 2))
            block.copy_(products.to(torch.float64).sum(dim=0))  # faster than sum(dtype=)
        else:
            block.zero_()
        if whole < d:
            block += rest[first:] @ rest[start:end].T
        gram[start:end, end:] = gram[end:, start:end].T
    return gram


def _error_ratio(sq_norms: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """max over pairs i != j of the error bound / max(D_ij, median off-diagonal D)."""
    if len(distances) < 2:
        return distances.new_zeros(())
    lengths = sq_norms.clamp_min(0).sqrt()
    bound = (lengths[:, None] + lengths[None, :]).square_().mul_(FLOAT32_GRAM_ERROR)
    scale = distances.clamp_min(_off_diagonal(distances).median())
    ratio = torch.where(bound > 0, bound / scale, 0)  # bound > 0 = scale: inf, fails
    return _off_diagonal(ratio).max()


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a contiguous square matrix, as an [n - 1, n] view."""
    n = len(matrix)
    return matrix.flatten()[1:].view(n - 1, n + 1)[:, :n]


def _float32_distances(x: torch.Tensor) -> torch.Tensor | None:
    """Squared distances from a float32 Gram matrix within DISTANCE_TOLERANCE, or None
    (a non-finite entry or a float32 overflow, or no accurate enough Gram matrix)."""
    gram = _chunked_gram(x)
    distances = _distances_from_gram(gram)
    finite = torch.isfinite(gram).all()
    ratio = _error_ratio(gram.diagonal(), distances)
    if bool(finite & (ratio <= DISTANCE_TOLERANCE)):
        return distances
    if not bool(finite):
        return None
    # The rows lie far from the origin compared with their distances: centre them on the
    # row of smallest median distance, unless its error bound, estimated from these
    # distances (within 25% of the scale), would fail anyway.
    center = smallest_first(distances.median(dim=1).values)[0]
    if ratio <= 0.25 and _error_ratio(distances[center], distances) > 2 * DISTANCE_TOLERANCE:
        return None
    gram = _chunked_gram(x - x[center])
    distances = _distances_from_gram(gram)
    return distances if bool(_error_ratio(gram.diagonal(), distances) <= DISTANCE_TOLERANCE) \
        else None


def gram_matrix(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the float64 Gram matrix of the rows, Bool[n] finite rows). The entries of a
    non-finite row are meaningless (NaN or inf); every other entry is exact up to
    float64 rounding (a row pair's entry depends on that pair only)."""
    x = gradients.to(torch.float64)
    return x @ x.T, finite_rows(gradients)


def finite_rows(gradients: torch.Tensor) -> torch.Tensor:
    """Bool[n]: the rows whose entries are all finite. Multiplying by a zero vector
    gives NaN exactly for rows holding a NaN or an infinity (0 * inf = NaN), in one
    read pass: about 10x faster on CPU than torch.isfinite(gradients).all(dim=1)."""
    return torch.isfinite(torch.mv(gradients, gradients.new_zeros(gradients.shape[1])))


def mean_of_rows(gradients: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """The mean of the rows `selected` (indices): gradients[selected].mean(dim=0), the
    same bits; on CPU by blocks of COLUMN_BLOCK columns (the last one up to twice as
    wide, so that each column is summed by the same vectorised code as in one piece),
    and the selected rows are never copied out whole: about twice as fast at n = 51,
    d = 79,510."""
    d = gradients.shape[1]
    if gradients.device.type != "cpu" or d < 2 * COLUMN_BLOCK:
        return gradients.index_select(0, selected).mean(dim=0)
    result = gradients.new_empty(d)
    starts = range(0, d - COLUMN_BLOCK + 1, COLUMN_BLOCK)
    for start, end in zip(starts, [*starts[1:], d]):
        result[start:end] = gradients[:, start:end].index_select(0, selected).mean(dim=0)
    return result


def weighted_sum(weights: torch.Tensor, gradients: torch.Tensor,
                 finite: torch.Tensor) -> torch.Tensor:
    """weights @ gradients (weights: Tensor[n] or Tensor[m, n]) in the gradients' dtype,
    leaving out the rows that are not finite: their weight must be 0, and 0 * NaN would
    poison the sum."""
    weights = weights.to(gradients.dtype)
    if bool(finite.all()):
        return weights @ gradients
    return weights[..., finite] @ gradients[finite]


def smallest_first(scores: torch.Tensor) -> torch.Tensor:
    """Indices ordering `scores` ascending; ties keep row order, NaN comes after +inf
    (give a non-finite row a NaN score to rank it behind every finite one)."""
    return torch.argsort(scores, stable=True)


# The Krum family (krum, multi-krum, bulyan). Kept here rather than in defenses/krum.py
# so that every rule using it depends only on this module (whose hash the provenance holds).

KRUM_NEIGHBOURS = {"n-f-2": 2, "n-f-1": 1}  # Blanchard et al. / the ICLR'21 harness


def neighbour_sums(distances: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the sum of its k smallest entries off the diagonal."""
    distances = distances.clone().fill_diagonal_(math.inf)
    return distances.topk(k, dim=1, largest=False).values.sum(dim=1)


def selection_count(m: int | str, n: int, f: int) -> int | None:
    """An option counting rows: an integer, or the text 'n-f' / 'n-f-K'; None if neither."""
    text = str(m).replace(" ", "")
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"n-f(?:-(\d+))?", text)
    return n - f - int(match.group(1) or 0) if match else None


def krum_select(gradients: torch.Tensor, f: int, m: int | str = 1, squared: bool = True,
                neighbours: str = "n-f-2") -> Aggregated:
    """Mean of the m rows of lowest Krum score (sum of squared distances to the
    n - f - 2 nearest other rows; plain distances and n - f - 1 as options).
    Non-finite rows are infinitely far from all and rank behind every finite row."""
    n = gradients.shape[0]
    distances, finite = distances_and_finite(gradients)
    scores = neighbour_sums(distances if squared else distances.sqrt(),
                            n - f - KRUM_NEIGHBOURS[neighbours])
    scores = scores.masked_fill(~finite, math.nan)
    selected = smallest_first(scores)[:selection_count(m, n, f)]
    return Aggregated(mean_of_rows(gradients, selected), selected)


def krum_check(n: int, f: int, m: int | str = 1, squared: bool = True,
               neighbours: str = "n-f-2") -> str | None:
    if neighbours not in KRUM_NEIGHBOURS:
        return "neighbours must be 'n-f-2' (Blanchard et al.) or 'n-f-1' (ICLR'21 harness)"
    count = selection_count(m, n, f)
    if count is None or not 1 <= count <= n - f:
        return f"m must be an integer in [1, n-f = {n - f}], or 'n-f' / 'n-f-K', not {m!r}"
    return None


def krum_bound(n: int, f: int, d: int) -> float:
    """The variance-norm bound of Krum and Bulyan (El Mhamdi et al. 2018)."""
    return 1 / math.sqrt(2 * (n - f + f * (n + f * (n - f - 2) - 2) / (n - 2 * f - 2)))
