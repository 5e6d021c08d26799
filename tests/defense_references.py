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
