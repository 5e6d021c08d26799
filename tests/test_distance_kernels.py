"""The blocked float32 Gram matrix and Bulyan's host-side selection at sizes where they
take several blocks (n > GRAM_BLOCK_COLUMNS): the same entries wherever the rows sit,
within the float32 bound, and selections equal to the plain Krum-after-Krum loop."""
import math

import pytest
import torch

from benchmark import distances as distance_kernels
from defenses import bulyan

D = 2 * distance_kernels.GRAM_CHUNK + 77  # full chunks and a remainder


def rows(n, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g) + offset * torch.randn(D, generator=g)
    x[n // 3:n // 2] = x[0]  # duplicated rows: exact ties
    return x


@pytest.mark.parametrize("n", [2, 15, 16, 17, 33, 40, 51, 70])
def test_blocks_cover_the_lower_triangle_with_wide_operands(n):
    covered = torch.zeros(n, n, dtype=torch.bool)
    for first, start, end in distance_kernels._gram_blocks(n):
        assert n - first >= min(n, distance_kernels.GRAM_MIN_ROWS)
        assert end - start >= min(n, distance_kernels.GRAM_MIN_ROWS) or start == 0
        covered[first:, start:end] = True
    assert covered[torch.ones(n, n, dtype=torch.bool).tril()].all()


@pytest.mark.parametrize("n", [17, 33, 51, 70])
def test_blocked_gram_ignores_row_order_and_is_within_the_bound(n):
    x = rows(n, n)
    gram = distance_kernels._chunked_gram(x)
    assert torch.equal(gram, gram.T)
    for seed in range(3):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(distance_kernels._chunked_gram(x[order]), gram[order][:, order])
    exact = x.double() @ x.double().T
    norms = x.double().norm(dim=1)
    bound = distance_kernels.FLOAT32_GRAM_ERROR * norms[:, None] * norms[None, :]
    assert ((gram - exact).abs() <= bound).all()


def plain_selection(distances, finite, f, count):
    """Krum applied again and again to the remaining rows, in Python floats."""
    n = len(distances)
    remaining, picks = list(range(n)), []
    for _ in range(count):
        k = max(len(remaining) - f - 2, 1)

        def key(i):
            others = sorted(float(distances[i, j]) for j in remaining if j != i)
            score = sum((others + [math.inf] * k)[:k])
            return score + (0 if finite[i] else math.inf), i
        picks.append(min(remaining, key=key))
        remaining.remove(picks[-1])
    return picks


@pytest.mark.parametrize("n, f", [(51, 12), (40, 9), (11, 2), (7, 1), (3, 0), (9, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_selection_is_krum_after_krum(n, f, seed):
    x = rows(n, seed, offset=3.0).double()
    if seed:
        x[1, 5] = math.nan
        x[n - 1, 0] = math.inf
    distances, finite = distance_kernels.distances_and_finite(x)
    expected = plain_selection(distances, finite.tolist(), f, n - 2 * f)
    assert bulyan.select(x, f, n - 2 * f).tolist() == expected
