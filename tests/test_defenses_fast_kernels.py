"""The fast shared kernels (benchmark.distances, benchmark.coordinates) against their plain float64 / whole-matrix
forms: float32 pairwise distances (error bound, which Gram matrix is used, row order,
non-finite rows, TF32), the rules built on them, and the block-wise column sort."""
import math

import pytest
import torch

from benchmark import api, registry
from benchmark import distances as distance_kernels
from benchmark.coordinates import COLUMN_BLOCK
from benchmark.api import Aggregated

N, D = 15, 3000  # D > GRAM_CHUNK and not a multiple of it: full chunks and a remainder


@pytest.fixture(autouse=True)
def float32_path_at_any_size(monkeypatch):
    """The float32 Gram matrix is used from FLOAT32_GRAM_MIN_ENTRIES; test it on small inputs."""
    monkeypatch.setattr(distance_kernels, "FLOAT32_GRAM_MIN_ENTRIES", 0)


def exact_distances(x):
    """The reference: squared distances of float32 rows, differences squared and summed
    in float64. Exactly 0 between identical rows (every term is +0, in any summation
    order); otherwise a sum of non-negative terms, each exact or rounded once or twice,
    so within gamma_{D+2}(float64) ~ 3.3e-13 of the exact D_ij, relatively: no
    cancellation, unlike a Gram matrix, and nothing depends on where the rows sit."""
    x = x.double()
    differences = x[:, None, :] - x[None, :, :]
    return (differences * differences).sum(dim=-1)


def gram_distances(x):
    """What the float64 path computes (the float64 Gram matrix of these rows, in these
    positions): to check which path the kernel took, bit for bit. Not a reference for
    accuracy, nor for row order: BLAS dgemm may sum an entry in an order that depends on
    where it sits in the product (MKL on AVX2 CPUs does, on tile edges), so its entries
    between identical rows need not be 0, nor G_ij equal G_ji."""
    gram, _ = api.gram_matrix(x)
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0).fill_diagonal_(0)


def float64_gram_bound(x):
    """The error bound of float64 Gram distances against exact_distances: a float64 dot
    product of K = D terms in any order is off by at most gamma_K ||x_i|| ||x_j||
    (Higham, eq. 3.5), so G_ii + G_jj - 2 G_ij, with its two roundings, by at most
    gamma_{K+3} (||x_i|| + ||x_j||)^2; the reference adds at most gamma_{D+2} D_ij, less
    than the same again. Twice gamma_{K+4} covers both (and the rounded norms)."""
    u, k = 2.0 ** -53, x.shape[1] + 4
    lengths = x.double().norm(dim=1)
    return 2 * (k * u / (1 - k * u)) * (lengths[:, None] + lengths[None, :]).square()


def layouts():
    """name -> (float32 rows, how many float32 Gram matrices the kernel computes; 0: it
    falls back to float64)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(N, D, generator=g)
    offset = torch.randn(D, generator=g)
    cluster = noise.clone()
    cluster[:5] = 50 * offset + 0.01 * torch.randn(5, D, generator=g)  # far and tight
    duplicates = noise.clone()
    duplicates[N // 2:] = noise[0]  # the `little` attack sends identical rows
    return {
        "near the origin": (noise, 1),
        "offset 10x": (noise + 10 * offset, 2),
        "offset 1000x": (noise + 1000 * offset, 2),
        "far tight cluster": (cluster, 0),
        "duplicates": (duplicates, 1),
        "all identical": (noise[0].expand(N, D).clone(), 2),
        "small integers": (torch.randint(-2, 3, (N, D), generator=g).float(), 1),
    }


LAYOUTS = layouts()


@pytest.mark.parametrize("name", LAYOUTS)
def test_float32_distances_within_the_documented_bound(name, monkeypatch):
    x, grams = LAYOUTS[name]
    calls = []
    chunked = distance_kernels._chunked_gram
    monkeypatch.setattr(distance_kernels, "_chunked_gram",
                        lambda rows: calls.append(1) or chunked(rows))
    distances, finite = api.distances_and_finite(x)
    expected = exact_distances(x)
    assert finite.all() and distances.dtype == torch.float64
    if grams == 0:  # the float64 path: its Gram matrix, bit for bit, within its bound
        assert torch.equal(distances, gram_distances(x))
        assert ((distances - expected).abs() <= float64_gram_bound(x)).all()
        return
    assert len(calls) == grams, f"{name}: {len(calls)} float32 Gram matrices"
    off_diagonal = ~torch.eye(N, dtype=torch.bool)
    scale = torch.maximum(expected, expected[off_diagonal].median())
    error = ((distances - expected).abs() / torch.where(scale > 0, scale, 1))[off_diagonal]
    assert error.max() <= distance_kernels.DISTANCE_TOLERANCE * 1.01  # the guarantee
    assert error.max() <= 1e-5  # what it is in practice (float32 rounding, not the bound)
    assert torch.equal(distances, distances.T) and not distances.diagonal().any()
    # Each float32 Gram entry is computed alike wherever its rows sit (see _chunked_gram;
    # the row-order test below), so identical rows give G_ij = G_ii = G_jj, bit for bit, and
    # D_ij = 0 exactly; the reference is 0 exactly there and > 0 elsewhere.
    assert torch.equal(distances == 0, expected == 0)
    if name == "small integers":  # exact products, exact float64 sums: exact distances
        assert torch.equal(distances, expected)


def test_the_guard_rejects_an_inaccurate_float32_gram_matrix():
    """Far from the origin, the bound of the rows' own Gram matrix exceeds the tolerance
    (so the kernel centres them), while the centred rows pass."""
    x, _ = LAYOUTS["offset 1000x"]
    gram = distance_kernels._chunked_gram(x)
    assert distance_kernels._error_ratio(gram.diagonal(), distance_kernels._distances_from_gram(gram)) \
        > distance_kernels.DISTANCE_TOLERANCE
    centred = distance_kernels._chunked_gram(x - x[0])
    assert distance_kernels._error_ratio(centred.diagonal(), distance_kernels._distances_from_gram(centred)) \
        <= distance_kernels.DISTANCE_TOLERANCE


def test_the_error_constant_covers_a_float32_dot_product():
    u, k = 2.0 ** -24, distance_kernels.GRAM_CHUNK
    assert distance_kernels.FLOAT32_GRAM_ERROR >= k * u / (1 - k * u) + 2 * u
    g = torch.Generator().manual_seed(1)
    y = torch.randn(4, k, generator=g) + 3
    exact = y.double() @ y.double().T
    error = (distance_kernels._chunked_gram(y) - exact).abs()
    norms = y.double().norm(dim=1)
    assert (error <= distance_kernels.FLOAT32_GRAM_ERROR * norms[:, None] * norms[None, :]).all()


@pytest.mark.parametrize("name", LAYOUTS)
def test_float32_distances_ignore_row_order(name):
    """The float32 path: bit for bit (its products are computed alike wherever the rows
    sit). The float64 fallback (`far tight cluster`) is one dgemm, whose summation
    order may depend on an entry's place in the product (MKL's AVX2 kernels, on tile
    edges): the same distances within twice its error bound only."""
    x, grams = LAYOUTS[name]
    permutation = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    distances = api.pairwise_sq_distances(x)
    permuted = api.pairwise_sq_distances(x[permutation])
    expected = distances[permutation][:, permutation]
    if grams:
        assert torch.equal(permuted, expected)
    else:
        assert ((permuted - expected).abs() <= 2 * float64_gram_bound(x[permutation])).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf, 3e38])
def test_non_finite_float32_rows_take_the_float64_path(bad):
    x = LAYOUTS["near the origin"][0].clone()
    x[2, 7] = bad
    x[5, 0] = bad
    distances, finite = api.distances_and_finite(x)
    if bad == 3e38:  # finite, but float32 products overflow: float64 handles it
        assert finite.all()
        assert torch.equal(distances, gram_distances(x))
        assert ((distances - exact_distances(x)).abs() <= float64_gram_bound(x)).all()
        return
    assert finite.tolist() == [i not in (2, 5) for i in range(N)]
    assert distances[2, 0] == math.inf and distances[5, 2] == math.inf
    assert distances[2, 2] == 0
    kept = [i for i in range(N) if i not in (2, 5)]
    # Between finite rows: the float64 Gram distances of these rows in these places, bit
    # for bit (the float64 path), and within the float64 bound of the exact distances of
    # the finite rows alone (the non-finite rows poison nothing). Not bitwise those of
    # gram_distances(x[kept]): the rows sit elsewhere in that product.
    assert torch.equal(distances[kept][:, kept], gram_distances(x)[kept][:, kept])
    assert ((distances[kept][:, kept] - exact_distances(x[kept])).abs()
            <= float64_gram_bound(x[kept])).all()


def test_float32_products_rounded_to_tf32_use_float64():
    x = LAYOUTS["near the origin"][0]
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        distances = api.pairwise_sq_distances(x)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert torch.equal(distances, gram_distances(x))


def little_attack(n, f, d, seed):
    g = torch.Generator().manual_seed(seed)
    honest = torch.randn(d, generator=g) + torch.randn(n - f, d, generator=g)
    byzantine = honest.mean(dim=0) - 1.5 * honest.std(dim=0)
    x = torch.cat([honest, byzantine.expand(f, d)])
    return x[torch.randperm(n, generator=g)]


ICLR21_KRUM = {"squared": False, "neighbours": "n-f-1", "m": "n-f-2"}


@pytest.mark.parametrize("rule, options", [
    ("krum", {}), ("multi-krum", {}), ("bulyan", {}), ("bulyan", {"variant": "iclr21"}),
    ("mda", {}), ("nnm", {}), ("krum", ICLR21_KRUM)])
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_rules_select_what_float64_selects(rule, options, seed):
    n, f = 15, 3
    x = little_attack(n, f, D, seed) if seed else torch.randn(
        n, D, generator=torch.Generator().manual_seed(seed)) + 5
    spec = registry.lookup("defense", rule).spec
    options = {**spec.options, **options}
    result = spec.aggregate(x, f, **options)
    expected = spec.aggregate(x.double(), f, **options)
    if isinstance(result, Aggregated):
        assert torch.equal(result.selected, expected.selected)
        result, expected = result.vector, expected.vector
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, rtol=1e-5, atol=1e-5)


# The column sort goes block by block on CPU: rules must not see the seams.

def column_inputs(dtype):
    g = torch.Generator().manual_seed(5)
    d = 2 * COLUMN_BLOCK + 5
    x = torch.randint(-3, 4, (10, d), generator=g).to(dtype)  # ties everywhere
    x[:, ::2] = torch.randn(10, (d + 1) // 2, generator=g, dtype=dtype)
    x[3, 10], x[7, 4100], x[1, 8196] = math.nan, math.inf, -math.inf
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [9, 10])
def test_block_wise_statistics_match_one_whole_sort(dtype, n):
    x = column_inputs(dtype)[:n]
    whole = x.sort(dim=0).values  # torch sorts NaN last too
    assert torch.equal(api.sorted_coordinates(x).isnan(), whole.isnan())
    assert torch.equal(api.sorted_coordinates(x).nan_to_num(), whole.nan_to_num())
    statistics = {
        "median": api.median_of_sorted,
        "trmean": lambda o: o[2:n - 2].mean(dim=0),
        "meamed": lambda o: api.mean_around_median(o, n - 2),
        "phocas": lambda o: api.mean_closest(o, o[2:n - 2].mean(dim=0), n - 2),
        "small window": lambda o: api.mean_around_median(o, 3),
    }
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    for name, statistic in statistics.items():
        torch.testing.assert_close(api.coordinate_statistic(x, statistic), statistic(whole),
                                   rtol=tolerance, atol=tolerance, equal_nan=True, msg=name)
    assert torch.equal(api.coordinate_median(x).nan_to_num(),
                       api.median_of_sorted(whole).nan_to_num())


def test_mean_around_median_is_mean_closest_to_the_median():
    """The band of compared rows (bulyan's small window) changes nothing, ties included."""
    g = torch.Generator().manual_seed(9)
    for trial in range(300):
        n = int(torch.randint(3, 16, (1,), generator=g))
        count = int(torch.randint(1, n + 1, (1,), generator=g))
        x = (torch.randint(-2, 3, (n, 40), generator=g).to(torch.float64) if trial % 2
             else torch.randn(n, 40, generator=g, dtype=torch.float64))
        ordered = api.sorted_coordinates(x)
        expected = api.mean_closest(ordered, api.median_of_sorted(ordered), count)
        assert torch.equal(api.mean_around_median(ordered, count), expected), (n, count)


def test_small_float32_inputs_use_float64(monkeypatch):
    monkeypatch.setattr(distance_kernels, "FLOAT32_GRAM_MIN_ENTRIES", N * D + 1)
    x = LAYOUTS["near the origin"][0]
    assert torch.equal(api.pairwise_sq_distances(x), gram_distances(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("extra", [0, 7, COLUMN_BLOCK - 1])
def test_mean_of_rows_by_blocks_is_the_plain_mean(dtype, extra):
    """Multi-Krum promises x[selected].mean(dim=0) bit for bit (tests/test_defenses.py)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(13, 2 * COLUMN_BLOCK + extra, generator=g, dtype=dtype)
    for count in (1, 4, 13):
        selected = torch.randperm(13, generator=g)[:count]
        assert torch.equal(api.mean_of_rows(x, selected), x[selected].mean(dim=0))
