"""Slow, obviously correct references of every defense: plain loops over Python lists in
float64 (inputs are small: n <= 12, d <= 5). tests/test_defenses.py compares the library
against them."""
import itertools
import math

import torch

INF = math.inf


# --- references -----------------------------------------------------------------

def rows_of(x):
    return [[float(v) for v in row] for row in x]


def finite(row):
    return all(math.isfinite(v) for v in row)


def mean_rows(rows):
    return [sum(column) / len(rows) for column in zip(*rows)]


def sq_distance(a, b):
    if not (finite(a) and finite(b)):
        return 0.0 if a is b else INF
    return sum((u - v) ** 2 for u, v in zip(a, b))


def norm(row):
    return math.sqrt(sum(v * v for v in row)) if finite(row) else INF


def column_sorted(rows, j):
    return sorted(INF if math.isnan(r[j]) else r[j] for r in rows)


def median_list(values):
    values, n = sorted(values), len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def closest_mean(values, center, count):
    chosen = sorted(values, key=lambda v: (abs(v - center), v))[:count]
    return sum(chosen) / count


def ref_average(rows, f):
    return mean_rows(rows)


def ref_median(rows, f):
    return [median_list(column_sorted(rows, j)) for j in range(len(rows[0]))]


def ref_trmean(rows, f):
    n = len(rows)
    return [sum(column_sorted(rows, j)[f:n - f]) / (n - 2 * f) for j in range(len(rows[0]))]


def ref_phocas(rows, f):
    centers = ref_trmean(rows, f)
    return [closest_mean(column_sorted(rows, j), centers[j], len(rows) - f)
            for j in range(len(rows[0]))]


def ref_meamed(rows, f):
    centers = ref_median(rows, f)
    return [closest_mean(column_sorted(rows, j), centers[j], len(rows) - f)
            for j in range(len(rows[0]))]


def rank(rows, key):
    """Row indices by (non-finite last, key, index)."""
    return sorted(range(len(rows)), key=lambda i: (not finite(rows[i]), key(i), i))


def ref_krum(rows, f, m="1", squared=True, neighbours="n-f-2"):
    n = len(rows)
    k = n - f - (2 if neighbours == "n-f-2" else 1)
    count = {"1": 1, "n-f": n - f, "n-f-2": n - f - 2}[str(m)]

    def score(i):
        others = [sq_distance(rows[i], rows[j]) for j in range(n) if j != i]
        others = others if squared else [math.sqrt(v) for v in others]
        return sum(sorted(others)[:k])
    return mean_rows([rows[i] for i in rank(rows, score)[:count]])


def ref_multi_krum(rows, f):
    return ref_krum(rows, f, m="n-f")


def bulyan_picks(rows, f):
    """Bulyan's selection: n - 2f rows, each picked by Krum among those left, in order."""
    n = len(rows)
    remaining, picked = list(range(n)), []
    while len(picked) < n - 2 * f:
        k = max(len(remaining) - f - 2, 1)

        def score(i):
            others = [sq_distance(rows[i], rows[j]) for j in remaining if j != i]
            return sum(sorted(others + [INF] * k)[:k])
        best = min(remaining, key=lambda i: (score(i) + (0 if finite(rows[i]) else INF), i))
        picked.append(best)
        remaining.remove(best)
    return picked


def ref_bulyan(rows, f):
    n = len(rows)
    selection = [rows[i] for i in bulyan_picks(rows, f)]
    centers = ref_median(selection, f)
    beta = n - 4 * f
    return [closest_mean(column_sorted(selection, j), centers[j], beta)
            for j in range(len(rows[0]))]


def ref_mda(rows, f):
    """The mean of the first (n-f)-subset of smallest diameter, by enumeration."""
    def diameter(subset):
        return max((sq_distance(rows[i], rows[j]) for i, j in itertools.combinations(subset, 2)),
                   default=0.0)
    best = min(itertools.combinations(range(len(rows)), len(rows) - f), key=diameter)
    return mean_rows([rows[i] for i in best])


def ref_aksel(rows, f, mode="mid"):
    n, center = len(rows), ref_median(rows, f)
    count = (n + 1) // 2 if mode == "mid" else n - f
    order = rank(rows, lambda i: sq_distance(rows[i], center))
    return mean_rows([rows[i] for i in order[:count]])


def ref_cge(rows, f):
    return mean_rows([rows[i] for i in rank(rows, lambda i: norm(rows[i]))[:len(rows) - f]])


def ref_geomed(rows, f, iterations=100, tolerance=1e-6, nu=1e-6):
    points = [r for r in rows if finite(r)]
    z, previous = mean_rows(points), None
    for _ in range(iterations):
        distances = [math.sqrt(sq_distance(z, p)) for p in points]
        objective = sum(distances)
        if previous is not None and abs(previous - objective) <= tolerance * objective:
            break
        previous = objective
        weights = [1 / max(nu, d) for d in distances]
        z = [sum(w * p[j] for w, p in zip(weights, points)) / sum(weights)
             for j in range(len(z))]
    return z


def ref_cclip(rows, f, tau=10.0, iterations=1, center=None):
    v = list(center) if center is not None else [0.0] * len(rows[0])
    for _ in range(iterations):
        step = [0.0] * len(v)
        for row in rows:
            if not finite(row):
                continue
            difference = [a - b for a, b in zip(row, v)]
            length = math.sqrt(sum(t * t for t in difference))
            scale = min(1.0, tau / length) if length > 0 else 1.0
            step = [s + t * scale for s, t in zip(step, difference)]
        v = [a + s / len(rows) for a, s in zip(v, step)]
    return v


def ref_monna(rows, f, pivot=None):
    center = pivot if pivot is not None else ref_median(rows, f)
    order = rank(rows, lambda i: sq_distance(rows[i], center))
    return mean_rows([rows[i] for i in order[:len(rows) - f]])


def ref_caf(rows, f):
    n, d = len(rows), len(rows[0])
    weights = [1.0 if finite(r) else 0.0 for r in rows]
    x = torch.tensor([r if finite(r) else [0.0] * d for r in rows], dtype=torch.float64)
    best, best_value = mean_rows([r for r in rows if finite(r)]), INF
    while sum(weights) > n - 2 * f:
        c = torch.tensor(weights, dtype=torch.float64)
        mu = (c[:, None] * x).sum(0) / c.sum()
        covariance = sum(c[i] * torch.outer(x[i] - mu, x[i] - mu) for i in range(n)) / c.sum()
        values, vectors = torch.linalg.eigh(covariance)
        if values[-1] < best_value:
            best, best_value = mu.tolist(), float(values[-1])
        if values[-1] <= 0:
            break
        tau = [float((x[i] - mu) @ vectors[:, -1]) ** 2 if weights[i] > 0 else 0.0
               for i in range(n)]
        weights = [w * (1 - t / max(tau)) for w, t in zip(weights, tau)]
    return best


def ref_smea(rows, f, max_subsets=5000):
    def top_eigenvalue(subset):
        if not all(finite(rows[i]) for i in subset):
            return INF
        x = torch.tensor([rows[i] for i in subset], dtype=torch.float64)
        centred = x - x.mean(0)
        return float(torch.linalg.eigvalsh(centred.T @ centred / len(subset))[-1])
    best = min(itertools.combinations(range(len(rows)), len(rows) - f), key=top_eigenvalue)
    return mean_rows([rows[i] for i in best])


def ref_signsgd(rows, f, scale=0.0):
    d = len(rows[0])
    if scale == 0:
        scale = median_list([norm(r) for r in rows]) / math.sqrt(d)
    votes = [sum(0 if math.isnan(r[j]) else (r[j] > 0) - (r[j] < 0) for r in rows)
             for j in range(d)]
    return [scale * ((v > 0) - (v < 0)) for v in votes]


# Pre-aggregators: the reference returns rows.

def ref_nnm(rows, f):
    n, out = len(rows), []
    for i in range(n):
        order = sorted(range(n), key=lambda j: (-1 if j == i else sq_distance(rows[i], rows[j]), j))
        chosen = [rows[j] for j in order[:n - f]]
        out.append(mean_rows(chosen) if all(map(finite, chosen)) else [math.nan] * len(rows[i]))
    return out


def ref_arc(rows, f):
    n = len(rows)
    k = int(2 * f * (n - f) / n)
    threshold = sorted((norm(r) for r in rows), reverse=True)[k]
    return [r if not finite(r) else [v * min(1.0, threshold / norm(r)) if norm(r) > 0 else v
                                     for v in r] for r in rows]


def ref_bucketing(rows, f, s=2, seed=0):
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [rows[i] for i in order]
    return [mean_rows(shuffled[i:i + s]) for i in range(0, len(rows), s)]


def ref_clip(rows, f, tau=None):
    threshold = tau if tau is not None else median_list([norm(r) for r in rows])
    return [r if not finite(r) or norm(r) == 0 else [v * min(1.0, threshold / norm(r)) for v in r]
            for r in rows]


# --- rules of issue #20 (peers) ---------------------------------------------------

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


# --- rules with a trusted server data set (FLTrust's threat model) -----------------------

TRUSTED = (1.0, -0.5, 0.25, 2.0, -1.0)  # the server gradient the tests hand such rules


def trusted_gradient(d):
    return list(TRUSTED[:d])


def ref_fltrust(rows, f, server=None):
    """Cao et al.: TS_i = ReLU(cos(g_i, g0)), g_i rescaled to ||g0||, trust-weighted mean;
    a row that is not finite or is zero gets trust 0; zero when nothing is trusted."""
    server = trusted_gradient(len(rows[0])) if server is None else server
    server_norm = norm(server)
    total, weighted = 0.0, [0.0] * len(server)
    for row in rows:
        length = norm(row)
        if not finite(row) or length == 0 or not math.isfinite(server_norm) or server_norm == 0:
            continue
        trust = max(0.0, min(1.0, sum(u * v for u, v in zip(row, server))
                             / (length * server_norm)))
        total += trust
        weighted = [w + trust * v * server_norm / length for w, v in zip(weighted, row)]
    return [w / total for w in weighted] if total > 0 else [0.0] * len(server)
