"""Teeth for the parts of the larger defenses (issue 22): MDA's exact vertex-cover search,
SignGuard's sign statistics, mean shift and cluster choice, Bulyan's repeated Krum. Each
part is held to a brute force or a hand computation on inputs bigger or more tied than
the whole-rule references of tests/test_defenses.py reach."""
import itertools
import math

import numpy as np
import pytest
import torch

from defenses import bulyan, mda, signguard
from tests.defense_references import bulyan_picks, ref_bulyan, rows_of
from tests.defense_references_filters import ref_mean_shift
from tests.test_defenses import assert_close, run


# --- MDA: the cover search against brute force --------------------------------------

def random_graph(m, density, seed):
    """Adjacency bit masks of a random undirected graph on m vertices."""
    rng = np.random.default_rng(seed)
    edges = np.triu(rng.random((m, m)) < density, 1)
    return mda._conflicts(edges | edges.T)


def smallest_cover(adjacency, alive):
    vertices = [v for v in range(len(adjacency)) if alive >> v & 1]
    edges = [(u, v) for u, v in itertools.combinations(vertices, 2) if adjacency[u] >> v & 1]
    for size in range(len(vertices) + 1):
        for chosen in itertools.combinations(vertices, size):
            if all(u in chosen or v in chosen for u, v in edges):
                return size
    raise AssertionError("unreachable: every vertex is a cover")


def is_cover(adjacency, alive, cover):
    return all(not (adjacency[v] & alive & ~cover) for v in range(len(adjacency))
               if alive >> v & 1 and not cover >> v & 1)


def check_cover_search(adjacency, alive):
    smallest = smallest_cover(adjacency, alive)
    for budget in range(max(0, smallest - 2), smallest + 3):
        cover = mda._cover(adjacency, alive, budget)
        if budget < smallest:
            assert cover is None, (budget, smallest)
        else:
            assert cover is not None and cover & ~alive == 0, (budget, smallest)
            assert cover.bit_count() <= budget and is_cover(adjacency, alive, cover)


@pytest.mark.parametrize("chunk", range(8))
def test_mda_cover_exists_exactly_when_brute_force_finds_one(chunk):
    for seed in range(40 * chunk, 40 * chunk + 40):
        m = 6 + seed % 7
        adjacency = random_graph(m, density=(0.15, 0.3, 0.45, 0.6)[seed % 4], seed=seed)
        alive = (1 << m) - 1 if seed % 5 else (1 << m) - 1 - (1 << (seed % m))
        check_cover_search(adjacency, alive)


def test_mda_cover_where_no_vertex_of_highest_degree_is_in_the_smallest_cover():
    """A hub joined to four vertices, each also joined to its own pair of leaves-in-a-
    triangle: the smallest cover takes the four, never the hub (and no forced move
    applies at first: every degree is 2 or more)."""
    edges = np.zeros((13, 13), dtype=bool)
    for spoke in range(1, 5):
        a, b = 4 + 2 * spoke - 1, 4 + 2 * spoke
        for u, v in ((0, spoke), (spoke, a), (spoke, b), (a, b)):
            edges[u, v] = edges[v, u] = True
    check_cover_search(mda._conflicts(edges), (1 << 13) - 1)


@pytest.mark.parametrize("lengths", [(5,), (3, 3), (4, 5)])
def test_mda_cover_of_cycles_refuses_a_budget_below_half_of_each_cycle(lengths):
    m = sum(lengths)
    edges = np.zeros((m, m), dtype=bool)
    start = 0
    for length in lengths:
        ring = np.arange(start, start + length)
        for a, b in zip(ring, np.roll(ring, 1)):
            edges[a, b] = edges[b, a] = True
        start += length
    check_cover_search(mda._conflicts(edges), (1 << m) - 1)


@pytest.mark.parametrize("lengths", [(3,), (4,), (5,), (3, 4), (5, 6, 3), (7,)])
def test_mda_cycle_cover_takes_every_other_vertex_of_each_cycle(lengths):
    m = sum(lengths)
    shuffle = np.random.default_rng(m).permutation(m)  # cycles through scattered vertices
    edges = np.zeros((m, m), dtype=bool)
    start = 0
    for length in lengths:
        ring = shuffle[start:start + length]
        for a, b in zip(ring, np.roll(ring, 1)):
            edges[a, b] = edges[b, a] = True
        start += length
    adjacency, alive = mda._conflicts(edges), (1 << m) - 1
    cover = mda._cycle_cover(adjacency, alive)
    assert is_cover(adjacency, alive, cover) and cover & ~alive == 0
    assert cover.bit_count() == sum(math.ceil(length / 2) for length in lengths)


def test_mda_bits_lists_the_set_bits_in_increasing_order():
    assert list(mda._bits(0b1011_0010_0001)) == [0, 5, 8, 9, 11]
    assert list(mda._bits(0)) == []


@pytest.mark.parametrize("seed", range(12))
def test_mda_first_subset_of_smallest_diameter_by_enumeration(seed):
    rng = np.random.default_rng(seed)
    n, f = 11 + seed % 3, 2 + seed % 3
    points = rng.integers(-3, 4, size=(n, 3)).astype(float)  # integer: many tied distances
    distances = ((points[:, None] - points[None]) ** 2).sum(axis=2)

    def diameter(subset):
        return max((distances[i, j] for i, j in itertools.combinations(subset, 2)), default=0)
    best = min(itertools.combinations(range(n), n - f), key=diameter)
    kept = mda.min_diameter_subset(distances, f)
    assert list(np.flatnonzero(kept)) == list(best)


# --- SignGuard's parts --------------------------------------------------------------

def test_signguard_sign_statistics_are_fractions_of_positive_zero_negative_entries():
    block = torch.tensor([[1.0, 0.0, -2.0, 0.0, 3.0], [-1.0, -1.0, -1.0, -1.0, 2.0]])
    expected = torch.tensor([[2, 2, 1], [1, 0, 4]], dtype=torch.float64) / 5
    assert torch.equal(signguard.sign_statistics(block), expected)


def test_signguard_median_rows_for_odd_and_even_counts():
    odd = torch.tensor([[3.0, 0.1], [1.0, 0.5], [2.0, 0.3]], dtype=torch.float64)
    assert torch.equal(signguard.median_rows(odd), torch.tensor([2.0, 0.3], dtype=torch.float64))
    even = torch.tensor([[4.0, 0.0], [1.0, 1.0], [2.0, 0.5], [8.0, 0.25]], dtype=torch.float64)
    assert torch.equal(signguard.median_rows(even),
                       torch.tensor([3.0, 0.375], dtype=torch.float64))


def points(m, seed):
    """m points of 3 sign fractions in groups, as the rows of an attacked step give."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.1, 0.7], [0.8, 0.0, 0.2]],
                           dtype=torch.float64)
    group = torch.randint(0, 2 + seed % 2, (m,), generator=g)
    return centres[group] + 0.03 * torch.randn(m, 3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("quantile", [0.2, 0.5, 1.0])
def test_signguard_mean_shift_labels_match_the_reference(seed, quantile):
    p = points(5 + seed, seed)
    assert signguard.mean_shift(p, quantile).tolist() == ref_mean_shift(p.tolist(), quantile)


def test_signguard_equal_clusters_go_to_the_one_nearest_the_median_then_the_first():
    near, far = [0.5, 0.0, 0.5], [0.9, 0.0, 0.1]
    features = torch.tensor([far, far, near, near, [0.45, 0.0, 0.55]], dtype=torch.float64)
    # clusters {0, 1}, {2, 3}, {4}; the median statistics are `near`: that pair wins
    chosen = signguard.largest_cluster(features, quantile=0.5)
    assert chosen.tolist() == [False, False, True, True, False]
    # two pairs equally far from the median (0.5, 0, 0.5): the first one
    mirrored = torch.tensor([[0.6, 0.0, 0.4]] * 2 + [[0.4, 0.0, 0.6]] * 2, dtype=torch.float64)
    assert signguard.largest_cluster(mirrored, quantile=0.5).tolist() == [True, True, False, False]


def test_signguard_selects_the_rows_both_filters_keep():
    g = torch.Generator().manual_seed(3)
    honest = 1.0 + 0.1 * torch.randn(6, 20, generator=g, dtype=torch.float64)
    flipped = -(1.0 + 0.1 * torch.randn(2, 20, generator=g, dtype=torch.float64))
    huge = 50 * honest[:1]
    x = torch.cat([honest, flipped, huge])
    result = signguard.aggregate(x, 3, fraction=1.0, generator=torch.Generator())
    assert result.selected.tolist() == [0, 1, 2, 3, 4, 5]  # sign: not 6, 7; norm: not 8


# --- Bulyan: repeated Krum against the reference's picks ---------------------------

@pytest.mark.parametrize("seed", range(10))
def test_bulyan_picks_match_the_reference_on_ties_and_non_finite_rows(seed):
    g = torch.Generator().manual_seed(seed)
    f = 2 + seed % 2
    n = 4 * f + 3 + seed % 4
    x = torch.randint(-2, 3, (n, 4), generator=g).to(torch.float64)
    if seed % 3 == 1:
        x[seed % n] = math.inf
    if seed % 3 == 2:
        x[0, 0], x[n - 1] = math.nan, -math.inf
    distances = ((x[:, None] - x[None]) ** 2).sum(dim=2).nan_to_num(nan=math.inf).numpy()
    finite = torch.isfinite(x).all(dim=1).numpy()
    picks = bulyan.repeated_krum(distances, finite, f, n - 2 * f)
    assert picks == bulyan_picks(rows_of(x), f)
    assert_close(run("bulyan", x, f), ref_bulyan(rows_of(x), f), "bulyan")


# --- Clipped clustering's parts -----------------------------------------------------

def test_clippedclustering_cosine_distances_of_scaled_opposite_zero_and_identical_rows():
    a, b = [1.0, 2.0, 2.0], [2.0, -1.0, 0.0]
    x = torch.tensor([a, [2 * v for v in a], [-v for v in a], [0.0] * 3, b, a],
                     dtype=torch.float64)
    from defenses import clippedclustering
    distances = clippedclustering.cosine_distances(x @ x.T)
    assert distances[0, 1] == 0 and distances[0, 5] == 0      # same direction: 0 exactly
    assert distances[0, 2] == 2                               # opposite: 2
    assert distances[0, 4] == 1 and distances[3, 0] == 1      # orthogonal; a zero row: 1
    assert distances[3, 3] == 1
    assert bool((distances >= 0).all() and (distances <= 2).all())


def test_clippedclustering_three_rows_end_in_two_clusters():
    from defenses import clippedclustering
    distances = torch.tensor([[0.0, 0.1, 1.5], [0.1, 0.0, 1.4], [1.5, 1.4, 0.0]],
                             dtype=torch.float64)
    assert clippedclustering.two_clusters(distances).tolist() == [0, 0, 2]
    assert clippedclustering.two_clusters(distances[:2, :2]).tolist() == [0, 1]


def test_clippedclustering_average_linkage_weighs_clusters_by_size():
    """Points on a line at 0, 0.1, 0.2, 0.75, 0.8 and 3: {0, 1, 2} and {3, 4} form
    first; their average distance (0.68) is below any distance to 3, so they join and
    the point at 3 stays alone."""
    from defenses import clippedclustering
    points = torch.tensor([0.0, 0.1, 0.2, 0.75, 0.8, 3.0], dtype=torch.float64)
    distances = (points[:, None] - points[None, :]).abs()
    assert clippedclustering.two_clusters(distances).tolist() == [0, 0, 0, 0, 0, 5]
