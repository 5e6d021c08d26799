"""Issue 22, tests with teeth: benchmark.distances, measured with mutmut (see
docs/mutation-testing.md, "Measured: benchmark/distances.py").

Through the plugin API (benchmark.api, which re-exports the kernels) and the Krum family
through benchmark.registry; the float32 Gram path is reached through
`distances_and_finite` with inputs above FLOAT32_GRAM_MIN_ENTRIES.
"""
import math

import pytest
import torch

from benchmark import api, registry
from benchmark import distances as distance_kernels
from benchmark.coordinates import COLUMN_BLOCK


def exact(x):
    """Squared distances from the differences, in float64: no Gram matrix."""
    x = x.double()
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=-1)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# distances between rows

def test_pairwise_distances_are_the_squared_differences():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], dtype=torch.float64)
    assert api.pairwise_sq_distances(x).tolist() == \
        [[0.0, 25.0, 2.0], [25.0, 0.0, 13.0], [2.0, 13.0, 0.0]]


def test_identical_rows_are_at_distance_zero_never_below():
    x = randn(6, 50) * 1e3
    x[3] = x[1]
    distances = api.pairwise_sq_distances(x)
    assert (distances >= 0).all() and distances[1, 3] == 0 and distances[3, 1] == 0
    torch.testing.assert_close(distances, exact(x), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_row_is_infinitely_far_from_every_other(bad):
    x = randn(5, 7)
    x[2, 3] = bad
    distances, finite = api.distances_and_finite(x)
    assert finite.tolist() == [True, True, False, True, True]
    assert distances[2].tolist() == [math.inf, math.inf, 0.0, math.inf, math.inf]
    assert torch.equal(distances[:, 2], distances[2])
    kept = [0, 1, 3, 4]
    torch.testing.assert_close(distances[kept][:, kept], exact(x[kept]), rtol=1e-12, atol=1e-12)
    assert torch.equal(api.pairwise_sq_distances(x), distances)


def test_rows_too_large_for_float64_products_are_infinitely_far():
    """Finite rows whose Gram entries overflow: NaN or inf distances become +inf."""
    x = torch.tensor([[1e200, 0.0], [1e200, 0.0], [0.0, 1.0], [0.0, 2.0]],
                     dtype=torch.float64)
    distances, finite = api.distances_and_finite(x)
    assert finite.all()
    assert not distances.isnan().any()
    assert distances[0, 1] == math.inf and distances[0, 2] == math.inf
    assert distances.diagonal().tolist() == [0.0] * 4 and distances[2, 3] == 1.0


def test_finite_rows():
    x = torch.zeros(4, 3)
    x[1, 2], x[3, 0] = math.nan, -math.inf
    assert api.finite_rows(x).tolist() == [True, False, True, False]


def test_gram_matrix_is_float64_products_of_the_rows():
    x = torch.tensor([[1.0, 2.0], [3.0, math.inf]], dtype=torch.float32)
    gram, finite = api.gram_matrix(x)
    assert gram.dtype == torch.float64 and finite.tolist() == [True, False]
    assert gram[0, 0] == 5.0


# The float32 Gram matrix: from FLOAT32_GRAM_MIN_ENTRIES entries of float32 input.

BIG = (8, distance_kernels.FLOAT32_GRAM_MIN_ENTRIES // 8 + 3)  # one Gram chunk remainder


def float32_rows(offset=0.0, seed=0):
    x = randn(*BIG, seed=seed, dtype=torch.float32)
    return x + offset * randn(BIG[1], seed=seed + 1, dtype=torch.float32)


def within_tolerance(distances, x):
    expected = exact(x)
    off = ~torch.eye(len(x), dtype=torch.bool)
    scale = expected.clamp_min(expected[off].median())
    return bool(((distances - expected).abs() <= distance_kernels.DISTANCE_TOLERANCE
                 * scale).all())


@pytest.mark.parametrize("offset", [0.0, 30.0, 3000.0])
def test_large_float32_inputs_are_within_the_tolerance(offset):
    x = float32_rows(offset)
    distances, finite = api.distances_and_finite(x)
    assert distances.dtype == torch.float64 and finite.all() and finite.shape == (8,)
    assert within_tolerance(distances, x)
    assert distances.diagonal().tolist() == [0.0] * 8
    torch.testing.assert_close(distances, distances.T, rtol=1e-6, atol=0)


def test_large_float32_with_a_non_finite_entry_uses_float64():
    x = float32_rows()
    x[5, 100] = math.inf
    distances, finite = api.distances_and_finite(x)
    assert finite.tolist() == [True] * 5 + [False] + [True] * 2
    assert distances[5, 0] == math.inf and distances[5, 5] == 0
    assert within_tolerance(distances[[0, 1, 2]][:, [0, 1, 2]], x[[0, 1, 2]])


def test_large_float32_far_tight_pair_falls_back_to_float64():
    """Two rows far from the origin and close together, the median distance set by the
    others: no float32 Gram matrix is accurate enough for the pair, the float64 one is."""
    x = float32_rows()
    x[:2] = 50 * float32_rows(seed=3)[0] + 0.01 * x[:2]
    distances, _ = api.distances_and_finite(x)
    expected = exact(x)
    assert expected[0, 1] < 20
    torch.testing.assert_close(distances, expected, rtol=1e-9, atol=1e-3)


def test_float32_matrix_products_below_full_precision_use_float64():
    x = float32_rows(30.0)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        distances, _ = api.distances_and_finite(x)
    finally:
        torch.set_float32_matmul_precision(previous)
    gram, _ = api.gram_matrix(x)
    sq = gram.diagonal()
    assert torch.equal(distances, (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0)
                       .fill_diagonal_(0))


# combining rows

def test_mean_of_rows_is_the_selected_rows_mean_bit_for_bit():
    for d in (5, 2 * COLUMN_BLOCK - 1, 2 * COLUMN_BLOCK, 3 * COLUMN_BLOCK + 7):
        x = randn(9, d, dtype=torch.float32)
        selected = torch.tensor([7, 0, 3, 3])
        assert torch.equal(api.mean_of_rows(x, selected), x[selected].mean(dim=0)), d


def test_weighted_sum_leaves_out_non_finite_rows():
    x = torch.tensor([[1.0, 2.0], [math.nan, 1.0], [3.0, -1.0]])
    finite = api.finite_rows(x)
    weights = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64)
    result = api.weighted_sum(weights, x, finite)
    assert result.dtype == torch.float32 and result.tolist() == [6.5, -1.0]
    both = api.weighted_sum(torch.stack([weights, weights / 2]), x, finite)
    assert both.tolist() == [[6.5, -1.0], [3.25, -0.5]]
    assert api.weighted_sum(weights, x[[0, 2]].clone()[[0, 0, 1]],
                            torch.ones(3, dtype=torch.bool)).tolist() == [6.5, -1.0]


def test_smallest_first_keeps_ties_in_order_and_puts_nan_last():
    scores = torch.tensor([2.0, math.nan, 1.0, math.inf, 1.0, -math.inf])
    assert api.smallest_first(scores).tolist() == [5, 2, 4, 0, 3, 1]
    assert api.smallest_first(torch.zeros(40)).tolist() == list(range(40))


# the Krum family

def test_neighbour_sums_leave_each_row_out():
    distances = torch.tensor([[0.0, 1.0, 4.0, 9.0], [1.0, 0.0, 2.0, 7.0],
                              [4.0, 2.0, 0.0, 3.0], [9.0, 7.0, 3.0, 0.0]])
    assert api.neighbour_sums(distances, 1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert api.neighbour_sums(distances, 2).tolist() == [5.0, 3.0, 5.0, 10.0]
    assert distances.diagonal().tolist() == [0.0] * 4  # the input is left as it was


@pytest.mark.parametrize("m, expected", [
    (1, 1), ("3", 3), (" 2 ", 2), ("n-f", 7), ("n-f-2", 5), ("n - f - 10", -3),
    ("n-f-", None), ("n-g", None), ("x", None), ("-1", None), ("2.5", None), ("n-f2", None)])
def test_selection_count(m, expected):
    assert api.selection_count(m, 10, 3) == expected


def krum(x, f, **options):
    spec = registry.lookup("defense", "krum").spec
    return spec.aggregate(x, f, **{**spec.options, **options})


def line(*positions):
    return torch.tensor([[p, 0.0] for p in positions], dtype=torch.float64)


def test_krum_returns_the_row_of_lowest_score():
    x = line(0, 1, 2, 3, 20, 50)  # n = 6, f = 1: 3 neighbours
    result = krum(x, 1)
    assert result.selected.tolist() == [1] and result.vector.tolist() == [1.0, 0.0]


def test_multi_krum_averages_the_m_lowest_scores():
    x = line(0, 1, 2, 3, 20, 50)
    # squared scores with 3 neighbours: [14, 6, 6, 14, ...]
    result = krum(x, 1, m="3")
    assert result.selected.tolist() == [1, 2, 0] and result.vector.tolist() == [1.0, 0.0]
    assert krum(x, 1, m="n-f").selected.tolist() == [1, 2, 0, 3, 4]


def reference_krum_order(x, f, squared, neighbours):
    """Rows by Krum score, in Python floats: the sum over the k nearest other rows of
    the (squared) distances, k = n - f - 2 (or n - f - 1); ties by row index."""
    n = len(x)
    k = n - f - (2 if neighbours == "n-f-2" else 1)
    rows = x.tolist()

    def score(i):
        others = sorted(sum((a - b) ** 2 for a, b in zip(rows[i], rows[j])) for j in range(n)
                        if j != i)
        return sum(others[:k]) if squared else sum(math.sqrt(v) for v in others[:k])
    return sorted(range(n), key=lambda i: (score(i), i))


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("neighbours", ["n-f-2", "n-f-1"])
def test_krum_options_against_a_reference(squared, neighbours):
    for seed in range(6):
        x = randn(9, 3, seed=seed) ** 3  # heavy tails: the options disagree
        order = reference_krum_order(x, 2, squared, neighbours)
        result = krum(x, 2, m="3", squared=squared, neighbours=neighbours)
        assert result.selected.tolist() == order[:3], seed
        torch.testing.assert_close(result.vector, x[order[:3]].mean(dim=0))


def test_the_krum_options_change_the_pick():
    """The inputs of the test above do tell the options apart."""
    picks = {(squared, neighbours): [reference_krum_order(randn(9, 3, seed=seed) ** 3, 2,
                                                          squared, neighbours)[:3]
                                     for seed in range(6)]
             for squared in (True, False) for neighbours in ("n-f-2", "n-f-1")}
    assert len({str(p) for p in picks.values()}) == 4


def test_krum_ranks_non_finite_rows_last():
    x = line(0, 1, 2, 3)
    x[1, 0] = math.nan
    result = krum(x, 0, m="n-f")
    assert result.selected.tolist()[-1] == 1 and len(result.selected) == 4
    assert krum(x, 0, m="3").vector.tolist() == [5 / 3, 0.0]


def test_krum_check_messages():
    check = registry.lookup("defense", "krum").spec.check
    assert check(10, 3) is None and check(10, 3, m="n-f") is None and check(10, 3, m=7) is None
    assert check(10, 3, neighbours="n-f-1") is None
    assert check(10, 3, neighbours="n-f") == \
        "neighbours must be 'n-f-2' (Blanchard et al.) or 'n-f-1' (ICLR'21 harness)"
    for bad in (0, 8, "n-f+1", "n-f-7", "all"):
        assert check(10, 3, m=bad) == \
            f"m must be an integer in [1, n-f = 7], or 'n-f' / 'n-f-K', not {bad!r}"
    assert check(10, 3, m=1) is None


def test_krum_bound():
    n, f = 11, 2
    inner = n - f + f * (n + f * (n - f - 2) - 2) / (n - 2 * f - 2)
    assert api.krum_bound(n, f, 100) == pytest.approx(1 / math.sqrt(2 * inner), rel=1e-15)
    assert api.krum_bound(7, 1, 5) == pytest.approx(1 / math.sqrt(2 * (6 + (7 + 4 - 2) / 3)))


def test_two_large_float32_rows_far_out_and_close_together():
    """With two rows the median distance is their distance: the float32 Gram matrix of
    rows far from the origin is not accurate enough for it, and is not used."""
    x = float32_rows()[:2] * 0.01 + 50 * float32_rows(seed=3)[0]
    x = x.repeat(1, 4)  # 2 rows need 4 times the columns to reach the float32 path
    assert x.numel() >= distance_kernels.FLOAT32_GRAM_MIN_ENTRIES
    distances, finite = api.distances_and_finite(x)
    assert finite.all() and within_tolerance(distances, x)


def test_one_large_float32_row():
    x = float32_rows()[:1].repeat(1, 8)
    distances, finite = api.distances_and_finite(x)
    assert distances.tolist() == [[0.0]] and finite.tolist() == [True]


def test_the_api_defaults_are_krum():
    """krum_select(x, f): one row, squared distances, n - f - 2 neighbours; krum_check
    accepts m = 1 even where n - f = 1."""
    firsts = {}
    for seed in range(12):
        x = randn(9, 3, seed=seed) ** 3
        assert api.krum_select(x, 2).selected.tolist() == \
            reference_krum_order(x, 2, True, "n-f-2")[:1]
        firsts[seed] = {(squared, neighbours): reference_krum_order(x, 2, squared, neighbours)[0]
                        for squared in (True, False) for neighbours in ("n-f-2", "n-f-1")}
    # these inputs tell every other option apart from the defaults on the first row
    for other in [(False, "n-f-2"), (True, "n-f-1")]:
        assert any(first[other] != first[(True, "n-f-2")] for first in firsts.values())
    assert api.krum_check(9, 2) is None and api.krum_check(4, 3) is None
