"""Minimum-diameter averaging (ByzSGD): the mean of the n - f rows of smallest diameter.

Exact, without enumerating the C(n, f) subsets. Keeping n - f rows of diameter <= t
is removing a vertex cover of size <= f from the "conflict" graph whose edges join
rows farther apart than t. The optimal t is one of the pairwise distances: a binary
search over them asks, for each, whether a cover of size <= f exists, which a
branch and bound decides (forced moves, then branching on a vertex of highest degree:
either it or all its neighbours are removed). Graphs are bit masks (Python ints).
Several subsets often share the smallest diameter (all those holding its farthest
pair and no farther one): like an enumeration in itertools order, MDA returns the
first in lexicographic order of row indices, found row by row with the same search.
Non-finite rows are infinitely far from every row, so they are removed first.
Version 2: the distance matrix is made exactly symmetric first (a float Gram matrix may
differ by an ulp between D_ij and D_ji, which made the conflict graph directed; the search
then found no cover, fell back to keeping every row, inf rows included). Infinite distances
stay infinite (numpy's nan_to_num would make them the largest float: then more than f
non-finite rows gave a NaN mean instead of the ValueError; at most f, the case every run
can meet, gave and gives the same rows, so the version stays 2).
"""
import math

import numpy as np
import torch

from benchmark.api import Aggregated, AtLeast, Defense, mean_of_rows, pairwise_sq_distances


def _bits(mask):
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _cycle_cover(adjacency, alive):
    """Minimum cover of a graph whose vertices all have degree 2 (disjoint cycles):
    every other vertex of each cycle, ceil(length / 2) of them."""
    cover = 0
    while alive:
        start = (alive & -alive).bit_length() - 1
        cycle, previous, current = [start], -1, start
        while True:
            nxt = next(v for v in _bits(adjacency[current] & alive) if v != previous)
            if nxt == start:
                break
            cycle.append(nxt)
            previous, current = current, nxt
        for v in cycle[::2]:
            cover |= 1 << v
        for v in cycle:
            alive &= ~(1 << v)
    return cover


def _cover(adjacency, alive, budget):
    """A vertex cover of the graph induced on `alive` with at most `budget` vertices
    (a bit mask), or None if there is none."""
    cover, changed = 0, True
    while changed:  # forced moves
        changed = False
        for v in _bits(alive):
            if not alive >> v & 1:
                continue
            neighbours = adjacency[v] & alive
            degree = neighbours.bit_count()
            if degree == 0:
                alive &= ~(1 << v)
            elif degree > budget or degree == 1:
                # degree > budget: v is in every small cover; degree 1: its neighbour is
                # never a worse choice than v
                take = 1 << v if degree > budget else neighbours
                cover, alive, budget, changed = cover | take, alive & ~take, budget - 1, True
                if budget < 0:
                    return None
    if not alive:
        return cover
    degrees = {v: (adjacency[v] & alive).bit_count() for v in _bits(alive)}
    top = max(degrees, key=degrees.get)
    if sum(degrees.values()) > 2 * budget * degrees[top]:
        return None  # `budget` vertices cover at most budget * max degree edges
    if degrees[top] == 2:
        rest = _cycle_cover(adjacency, alive)
        return cover | rest if rest.bit_count() <= budget else None
    rest = _cover(adjacency, alive & ~(1 << top), budget - 1)
    if rest is not None:
        return cover | 1 << top | rest
    neighbours = adjacency[top] & alive
    if neighbours.bit_count() <= budget:
        rest = _cover(adjacency, alive & ~neighbours & ~(1 << top), budget - neighbours.bit_count())
        if rest is not None:
            return cover | neighbours | rest
    return None


def _conflicts(far):
    """Bit masks of a boolean adjacency matrix (numpy), one int per row."""
    packed = np.packbits(far, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _first_subset(adjacency, n, f, witness):
    """The kept rows (bit mask) of the lexicographically first (n - f)-subset that is
    independent in the conflict graph; `witness` is the kept set of one such solution.
    Rows are decided in index order: kept if some solution keeps them with the rows
    kept so far (the witness proves it for free), removed otherwise."""
    everyone = (1 << n) - 1
    kept = removed = 0
    for i in range(n):
        bit = 1 << i
        if kept.bit_count() == n - f:
            break
        if witness & bit:
            kept |= bit
            continue
        forced = removed
        for v in _bits(kept | bit):
            forced |= adjacency[v]
        budget = f - forced.bit_count()
        if forced & (kept | bit) or budget < 0:
            removed |= bit
            continue
        cover = _cover(adjacency, everyone & ~(kept | bit | forced), budget)
        if cover is None:
            removed |= bit
        else:
            kept |= bit
            witness = everyone & ~forced & ~cover
    return kept


def min_diameter_subset(distances, f):
    """The kept rows (a bool numpy array) of the first (n - f)-subset, in lexicographic
    order of row indices, of smallest diameter; `distances` is a numpy [n, n] array of
    squared distances, inf allowed."""
    n = len(distances)
    everyone = (1 << n) - 1
    distances = np.nan_to_num(np.maximum(distances, distances.T), nan=np.inf, posinf=np.inf)
    upper = distances[np.triu_indices(n, 1)]
    candidates = np.unique(upper[np.isfinite(upper)])
    best_graph = _conflicts(np.isinf(distances))  # t = inf: only non-finite pairs conflict
    best = _cover(best_graph, everyone, f)
    if best is None:
        raise ValueError(f"more than f = {f} rows are non-finite: no subset is finite")
    low, high = 0, len(candidates) - 1
    while low <= high:  # smallest candidate t with a cover of size <= f
        middle = (low + high) // 2
        graph = _conflicts(distances > candidates[middle])
        cover = _cover(graph, everyone, f)
        if cover is None:
            low = middle + 1
        else:
            best, best_graph, high = cover, graph, middle - 1
    kept = _first_subset(best_graph, n, f, everyone & ~best)
    return np.array([kept >> i & 1 for i in range(n)], dtype=bool)


def aggregate(gradients, f):
    kept = min_diameter_subset(pairwise_sq_distances(gradients).cpu().numpy(), f)
    selected = torch.from_numpy(np.flatnonzero(kept)).to(gradients.device)
    return Aggregated(mean_of_rows(gradients, selected), selected)



def upper_bound(n, f, d):
    return math.inf if f == 0 else (n - f) / (math.sqrt(8) * f)


defense = Defense(
    name="mda",
    aggregate=aggregate,
    needs=AtLeast(2, 1),
    upper_bound=upper_bound,
    description="Mean of the n-f rows whose diameter (largest pairwise distance) is "
                "smallest; exact (branch and bound), non-finite rows are removed first",
    reference="El Mhamdi et al., Genuinely distributed Byzantine machine learning "
              "(ByzSGD), PODC 2020",
    version=2,
)
