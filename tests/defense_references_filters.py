"""Slow, obviously correct references of the filtering rules that came from peer libraries
(issue #20): DnC, FoolsGold, clipped clustering and SignGuard, as plain loops over Python
lists in float64. The other rules' references, and the helpers, are in
tests/defense_references.py."""
import itertools
import math

import torch

from tests.defense_references import INF, finite, mean_rows, median_list, norm


def drawn_columns(d, size, generator):
    """The `size` coordinates a randomized rule draws, in increasing order."""
    return sorted(torch.randperm(d, generator=generator)[:size].tolist())


def ref_dnc(rows, f, c=1.0, niters=5, b=10000, seed=0):
    n, d = len(rows), len(rows[0])
    generator = torch.Generator().manual_seed(seed)
    good = [i for i in range(n) if finite(rows[i])]
    votes = {i: 0 for i in good}
    for _ in range(niters):
        columns = drawn_columns(d, b, generator) if b < d else list(range(d))
        sub = {i: [rows[i][j] for j in columns] for i in good}
        center = mean_rows(list(sub.values()))
        centred = torch.tensor([[v - m for v, m in zip(sub[i], center)] for i in good],
                               dtype=torch.float64)
        top = torch.linalg.svd(centred, full_matrices=False).Vh[0].tolist()
        score = {i: sum(a * b for a, b in zip(row, top)) ** 2
                 for i, row in zip(good, centred.tolist())}
        ranked = sorted(range(n), key=lambda i: (score.get(i, INF), i))
        for i in ranked[:n - math.floor(c * f)]:
            if i in votes:
                votes[i] += 1
    best = max(votes.values())
    return mean_rows([rows[i] for i in good if votes[i] == best])


def cosine(a, b):
    """Clamped to [-1, 1]; 0 when a row is zero; identical rows give exactly 1."""
    squares = sum(u * u for u in a) * sum(v * v for v in b)
    if squares <= 0:
        return 0.0
    return max(-1.0, min(1.0, sum(u * v for u, v in zip(a, b)) / math.sqrt(squares)))


def ref_foolsgold(rows, f, kappa=1.0):
    good = [i for i in range(len(rows)) if finite(rows[i])]
    cs = {(i, j): cosine(rows[i], rows[j]) for i in good for j in good if i != j}
    v = {i: max([cs[i, j] for j in good if j != i], default=-INF) for i in good}
    for i in good:
        for j in good:
            if i != j and v[j] > v[i] and v[j] > 0:
                cs[i, j] *= v[i] / v[j]
    alpha = {i: min(1.0, max(0.0, 1 - max([cs[i, j] for j in good if j != i], default=-INF)))
             for i in good}
    top = max(alpha.values())
    if top <= 0:
        return [0.0] * len(rows[0])
    weights = {}
    for i in good:
        a = 0.99 if alpha[i] == top else alpha[i] / top
        w = kappa * (math.log(a / (1 - a)) + 0.5) if a > 0 else 0.0
        weights[i] = min(1.0, max(0.0, w))
    total = sum(weights.values())
    if total <= 0:
        return [0.0] * len(rows[0])
    return [sum(weights[i] * rows[i][j] for i in good) / total for j in range(len(rows[0]))]


def clipped_mean(rows, kept, threshold):
    """The mean of rows `kept`, each clipped to norm `threshold`."""
    clipped = [[v * min(1.0, threshold / norm(rows[i])) if norm(rows[i]) > 0 else v
                for v in rows[i]] for i in kept]
    return mean_rows(clipped)


def ref_clippedclustering(rows, f, history=True, past=()):
    good = [i for i in range(len(rows)) if finite(rows[i])]
    tau = median_list(list(past) + [norm(rows[i]) for i in good])
    distance = {(i, j): 1 - max(-1.0, min(1.0, cosine(rows[i], rows[j])))
                for i in good for j in good}
    clusters = [[i] for i in good]
    while len(clusters) > 2:
        best = None
        for a, b in itertools.combinations(range(len(clusters)), 2):
            link = (sum(distance[i, j] for i in clusters[a] for j in clusters[b])
                    / (len(clusters[a]) * len(clusters[b])))
            if best is None or link < best[0]:
                best = (link, a, b)
        _, a, b = best
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]

    def key(cluster):
        return (-len(cluster), sum(distance[i, j] for i in cluster for j in cluster), cluster[0])
    return clipped_mean(rows, min(clusters, key=key), tau)


def ref_mean_shift(points, quantile):
    """Cluster labels (lowest member index) by flat-kernel mean shift (defenses/signguard.py)."""
    m = len(points)
    k = max(1, int(quantile * m))

    def sq(a, b):
        return sum((u - v) ** 2 for u, v in zip(a, b))
    h = sum(math.sqrt(sorted(sq(p, q) for q in points)[k - 1]) for p in points) / m

    def near(a, b):
        return sq(a, b) <= h * h * (1 + 1e-9) + 1e-300
    modes = [list(p) for p in points]
    for _ in range(300):
        moved = []
        for mode in modes:
            window = [p for p in points if near(mode, p)]
            moved.append(mean_rows(window))
        shift = max(sq(a, b) for a, b in zip(moved, modes))
        modes = moved
        if shift <= (h / 1000) ** 2:
            break
    labels = list(range(m))
    changed = True
    while changed:  # components of the "modes within h" graph, each labelled by its lowest index
        changed = False
        for i in range(m):
            for j in range(m):
                if near(modes[i], modes[j]) and labels[j] < labels[i]:
                    labels[i], changed = labels[j], True
    return labels


def ref_signguard(rows, f, L=0.1, R=3.0, fraction=0.1, quantile=0.5, seed=0):
    n, d = len(rows), len(rows[0])
    norms = [norm(r) for r in rows]
    M = median_list(norms)
    by_norm = [i for i in range(n) if finite(rows[i]) and L * M <= norms[i] <= R * M]
    columns = (drawn_columns(d, max(1, math.ceil(fraction * d)),
                             torch.Generator().manual_seed(seed))
               if fraction < 1 else list(range(d)))
    good = [i for i in range(n) if finite(rows[i])]
    features = []
    for i in good:
        values = [rows[i][j] for j in columns]
        features.append([sum(v > 0 for v in values) / len(values),
                         sum(v == 0 for v in values) / len(values),
                         sum(v < 0 for v in values) / len(values)])
    labels = ref_mean_shift(features, quantile)
    groups = {}
    for position, label in enumerate(labels):
        groups.setdefault(label, []).append(position)
    center = [median_list([p[c] for p in features]) for c in range(3)]

    def key(label):
        members = groups[label]
        mean = mean_rows([features[p] for p in members])
        return (-len(members), sum((a - b) ** 2 for a, b in zip(mean, center)), label)
    cluster = {good[p] for p in groups[min(groups, key=key)]}
    kept = [i for i in by_norm if i in cluster] or by_norm
    return clipped_mean(rows, kept, M)
