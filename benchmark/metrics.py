"""Per-step measurements (DESIGN.md, "Protocol facts").

Four sets of vectors are measured each step: `sampled` (honest gradients after
clipping, before momentum), `honest` (what honest workers submit), `attack`
(the Byzantine vectors) and `defense` (the aggregate, one vector). For a set of
N vectors: norm = ‖mean‖, max_coord = max_j |mean_j|,
deviation = sqrt(Σ‖g_i − mean‖² / (N − 1)). Undefined values are NaN: the
deviation of fewer than 2 vectors, anything of an empty set, a cosine with a
zero (or non-finite) vector, the cosine with the previous step and the
curvature at the first step.

The variance-norm condition of the rule holds at a step when
(honest deviation / honest norm)² < upper_bound(n, f, d)².

Cost (it must stay a small part of a step): per set, one pass for its mean and one
for its row norms; Σ‖g_i − mean‖² = Σ‖g_i‖² − N‖mean‖² unless that difference is
under CANCELLATION of Σ‖g_i‖² (nearly identical vectors), where the rows are
centred instead; a set of identical rows (one vector sent f times) is recognised
instead of measured. Then a Gram matrix of the means and one device-to-host
transfer (a second one only for such a recomputation).
"""
from __future__ import annotations

import math
from collections import deque

import torch

from .bitwise import same_memory

SETS = ("sampled", "honest", "attack", "defense")
PAIRS = [(a, b) for i, a in enumerate(SETS) for b in SETS[i + 1:]]
DEVIATION_SETS = SETS[:3]  # the defense set is a single vector

BASE_COLUMNS = ["step", "lr", "points", "loss", "theta_distance", "defense_norm"]
CONDITION_COLUMNS = ["honest_ratio", "sampled_ratio", "bound_squared", "condition_held"]
FULL_COLUMNS = (
    BASE_COLUMNS
    + [f"{s}_deviation" for s in DEVIATION_SETS]
    + [f"{s}_norm" for s in DEVIATION_SETS]
    + [f"{s}_max_coord" for s in SETS]
    + [f"cos_{a}_{b}" for a, b in PAIRS]
    + ["cos_sampled_previous", "curvature", "byzantine_selected"]
    + CONDITION_COLUMNS
)
NAN = float("nan")
# Σ‖g_i‖² − N‖mean‖² from float32 norms is good to ~3e-7 × Σ‖g_i‖²: when it is under
# 1e-2 of Σ‖g_i‖², the deviation is recomputed from centred rows (relative error ≤ 3e-5).
CANCELLATION = 1e-2
CHUNK_BYTES = 1 << 20  # rows are centred a chunk at a time on CPU, so they stay in cache


def variance_norm_ratio(squared_deviation: float, squared_norm: float) -> float:
    """(deviation / norm)², NaN where undefined (no deviation, zero or non-finite norm)."""
    if not squared_norm or not math.isfinite(squared_norm) or math.isnan(squared_deviation):
        return NAN
    return squared_deviation / squared_norm


def condition_held(ratio: float, bound_squared: float) -> float:
    """1.0 if ratio < bound² (strictly), 0.0 if not, NaN if either is undefined."""
    if math.isnan(ratio) or math.isnan(bound_squared):
        return NAN
    return float(ratio < bound_squared)


def _cosine(dot: float, squared_norm_a: float, squared_norm_b: float) -> float:
    product = squared_norm_a * squared_norm_b
    if not product or not math.isfinite(product) or not math.isfinite(dot):
        return NAN
    return max(-1.0, min(1.0, dot / math.sqrt(product)))  # rounding may step past ±1


def centred_square_sum(vectors: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Σ‖g_i − mean‖² in float64 from centred rows (accurate to ~1e-8 relative)."""
    row_bytes = vectors.shape[1] * vectors.element_size()
    rows = len(vectors) if vectors.is_cuda else max(1, CHUNK_BYTES // row_bytes)
    scratch = vectors.new_empty(min(rows, len(vectors)), vectors.shape[1])
    squared_rows = []
    for start in range(0, len(vectors), len(scratch)):
        chunk = vectors[start:start + len(scratch)]
        centred = torch.sub(chunk, mean, out=scratch[:len(chunk)])
        squared_rows.append(centred.square_().sum(dim=1))
    return torch.cat(squared_rows).to(torch.float64).sum()


class DiscountedWindow:
    """The sampled means of past steps and S_t = Σ_{i<P} μ^i m_{t−1−i}, P = min(t, W).

    S is updated in O(d) per step (the paper's MNIST uses W = 150) and recomputed
    directly every `reset_every` steps, so that a history restored from a checkpoint
    (`past` set from outside) replays to the very same bits as an uninterrupted run;
    `past` holds `reset_every` more means than the window for that. S is kept in the
    means' precision: its rounding decays by μ each step and is reset with it.
    """

    def __init__(self, momentum: float, window: int, reset_every: int = 16):
        self.momentum, self.window, self.reset_every = momentum, window, reset_every
        self.past: deque[torch.Tensor] = deque(maxlen=window + reset_every)  # newest first
        self._sum: torch.Tensor | None = None       # S of the last step measured
        self._sum_step: int | None = None
        self._appended: torch.Tensor | None = None  # the mean that step appended

    def _direct(self, offset: int) -> torch.Tensor | None:
        """S at step t − offset from `past`, summed in a fixed order."""
        terms = min(self.window, len(self.past) - offset)
        if terms <= 0:
            return None
        total = self.past[offset].clone()
        for i in range(1, terms):
            total.add_(self.past[offset + i], alpha=self.momentum ** i)
        return total

    def _advance(self, total: torch.Tensor | None, offset: int) -> torch.Tensor:
        """S at step t − offset from S at the step before (in place):
        S ← m_newest + μ·(S − μ^(W−1)·m_dropped), m_dropped once the window is full."""
        newest = self.past[offset]
        if total is None:
            return newest.clone()
        if len(self.past) > offset + self.window:
            total.sub_(self.past[offset + self.window], alpha=self.momentum ** (self.window - 1))
        return total.mul_(self.momentum).add_(newest)

    def discounted_sum(self, step: int) -> torch.Tensor | None:
        """S_step from the means of the steps before `step` (None at the first step)."""
        if not self.past:
            return None
        if step % self.reset_every == 0:
            total = self._direct(0)
        elif self._sum_step == step - 1 and self.past[0] is self._appended:
            total = self._advance(self._sum, 0)
        else:  # `past` was set from outside: replay from the last reset
            last_reset = min(step % self.reset_every, len(self.past))
            total = self._direct(last_reset)
            for offset in range(last_reset - 1, -1, -1):
                total = self._advance(total, offset)
        self._sum, self._sum_step = total, step
        return total

    def append(self, mean: torch.Tensor) -> None:
        self.past.appendleft(mean)
        self._appended = mean


class StepMetrics:
    """Turns each step's vectors into one row of FULL_COLUMNS (or BASE_COLUMNS when off)."""

    def __init__(self, full: bool, momentum: float, past_window: int, bound: float | None,
                 reset_every: int = 16):
        self.full = full
        self.momentum = momentum
        self.window = DiscountedWindow(momentum, past_window, reset_every)
        self.bound_squared = NAN if bound is None else float(bound) ** 2
        self.columns = FULL_COLUMNS if full else BASE_COLUMNS

    @property
    def past(self) -> deque:
        """Previous sampled means, newest first (what a checkpoint saves and restores)."""
        return self.window.past

    def row(self, *, step: int, lr: float, points: int, loss: float, theta_distance: float,
            sampled: torch.Tensor, honest: torch.Tensor, attack: torch.Tensor,
            defense: torch.Tensor, byzantine_selected: float) -> dict[str, float]:
        row = {"step": step, "lr": lr, "points": points, "loss": loss,
               "theta_distance": theta_distance}
        if not self.full:
            row["defense_norm"] = float(_norm64(defense))
            return row
        row.update(self._measure({"sampled": sampled, "honest": honest, "attack": attack},
                                 defense, step))
        row["byzantine_selected"] = byzantine_selected
        return {column: row[column] for column in self.columns}

    def _measure(self, sets: dict[str, torch.Tensor], defense: torch.Tensor, step: int) -> dict:
        counts = {name: len(vectors) for name, vectors in sets.items()}
        counts["defense"] = 1
        vectors_of = {name: next(other for other in sets if sets[other] is vectors)
                      for name, vectors in sets.items()}  # honest *is* sampled at `update`
        means, identical, spread = _means(sets, vectors_of, defense)
        previous = list(self.past)[:1]
        window_sum = self.window.discounted_sum(step)
        stacked = torch.stack([means[name].to(defense.dtype) for name in SETS] + previous)
        host = _to_host({  # everything the row needs, moved to the host at once
            "gram": stacked @ stacked.T,
            "max_coord": stacked[:len(SETS)].abs().amax(dim=1),
            "norm": torch.linalg.vector_norm(stacked[:len(SETS) - 1], dim=1),
            "defense_norm": _norm64(defense),  # as with metrics off, to the last bit
            **{f"row_norms:{name}": torch.linalg.vector_norm(sets[name], dim=1)
               for name in spread},
            **({} if window_sum is None else {"curvature_dot": torch.dot(
                means["sampled"], window_sum.to(means["sampled"].dtype))}),
        })
        self.window.append(means["sampled"])

        size = len(stacked)
        gram = [host["gram"][i * size:(i + 1) * size] for i in range(size)]
        max_coord = dict(zip(SETS, host["max_coord"]))
        norm = dict(zip(SETS, host["norm"] + host["defense_norm"]))
        row_norms = {name: host[f"row_norms:{name}"] for name in spread}
        curvature_dot = host["curvature_dot"][0] if window_sum is not None else NAN

        squared_deviation = self._squared_deviations(sets, means, counts, norm, row_norms)
        squared_deviation.update(dict.fromkeys(identical, 0.0))
        row = {}
        index = {name: i for i, name in enumerate(SETS)}
        for name in SETS:
            empty = counts[name] == 0
            row[f"{name}_norm"] = NAN if empty else norm[name]
            row[f"{name}_max_coord"] = NAN if empty else max_coord[name]
        for name in DEVIATION_SETS:
            row[f"{name}_deviation"] = math.sqrt(squared_deviation[vectors_of[name]])
        for a, b in PAIRS:
            i, j = index[a], index[b]
            row[f"cos_{a}_{b}"] = (NAN if counts[a] == 0 or counts[b] == 0
                                   else _cosine(gram[i][j], gram[i][i], gram[j][j]))
        last = len(SETS)
        row["cos_sampled_previous"] = (_cosine(gram[0][last], gram[0][0], gram[last][last])
                                       if previous else NAN)
        row["curvature"] = self.momentum * curvature_dot  # μ⟨m_t, Σ_{i<P} μ^i m_{t−1−i}⟩
        row["honest_ratio"] = variance_norm_ratio(squared_deviation[vectors_of["honest"]],
                                                  norm["honest"] ** 2)
        row["sampled_ratio"] = variance_norm_ratio(squared_deviation["sampled"],
                                                   norm["sampled"] ** 2)
        row["bound_squared"] = self.bound_squared
        row["condition_held"] = condition_held(row["honest_ratio"], self.bound_squared)
        return row

    @staticmethod
    def _squared_deviations(sets, means, counts, norm, row_norms) -> dict:
        """Σ‖g_i − mean‖² / (N − 1) per set in `row_norms`: Σ‖g_i‖² − N‖mean‖², or a
        centred recomputation where that difference cancels (see CANCELLATION)."""
        result = {name: NAN for name in sets}
        recompute = []
        for name, norms in row_norms.items():
            total, count = math.fsum(r * r for r in norms), counts[name]
            difference = total - count * norm[name] ** 2
            if math.isfinite(difference) and difference >= CANCELLATION * total:
                result[name] = difference / (count - 1)
            else:
                recompute.append(name)
        if recompute:
            exact = torch.stack([centred_square_sum(sets[name], means[name])
                                 for name in recompute]).tolist()
            for name, value in zip(recompute, exact):
                result[name] = value / (counts[name] - 1)
        return result


def _to_host(named: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Each tensor's values as float64 host numbers, under its name: one concatenation
    and one device-to-host transfer for all of them."""
    flat = [tensor.reshape(-1).to(torch.float64) for tensor in named.values()]
    values = torch.cat(flat).tolist()
    result, start = {}, 0
    for name, piece in zip(named, flat):
        result[name], start = values[start:start + len(piece)], start + len(piece)
    return result


def _means(sets: dict[str, torch.Tensor], vectors_of: dict[str, str], defense: torch.Tensor):
    """(the mean of each set, the sets of identical rows, the sets whose spread must be
    measured). Attacks often send one vector f times: such a set's mean is that vector
    and its deviation exactly 0, found without reading it for a mean and row norms."""
    distinct = [name for name in sets if vectors_of[name] == name]
    identical = {name for name in distinct if len(sets[name]) > 1
                 and torch.equal(sets[name][0], sets[name][1]) and _identical_rows(sets[name])}
    spread = [name for name in distinct if len(sets[name]) > 1 and name not in identical]
    means = {"defense": defense}
    for name in distinct:
        vectors = sets[name]
        if name in identical:
            means[name] = vectors[0].clone()
        elif len(vectors):
            means[name] = vectors.new_full((len(vectors),), 1 / len(vectors)) @ vectors
        else:
            means[name] = torch.zeros_like(defense)
    for name in sets:
        means[name] = means[vectors_of[name]]
    return means, identical, spread


def _finite(vector: torch.Tensor) -> bool:
    """Whether every entry is finite; a sum that overflows says no (callers then take
    the general path)."""
    return bool(torch.isfinite(vector.sum()))


def _norm64(vector: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(vector, dtype=torch.float64)


def _identical_rows(vectors: torch.Tensor) -> bool:
    """Whether every row equals the first. On CPU, one memcmp of the buffer against
    itself shifted by a row (one pass; torch's comparisons take two or more); rows that
    differ only by the sign of a zero then count as different, which changes nothing
    but the way their deviation (0) is found. NaN rows are never identical."""
    if vectors.stride(0) == 0:  # one row expanded (as attacks send it): nothing to compare
        return _finite(vectors[0])
    if vectors.device.type == "cpu" and vectors.is_contiguous():
        row = vectors.shape[1] * vectors.element_size()
        same = same_memory(vectors.data_ptr() + row, vectors.data_ptr(), row * (len(vectors) - 1))
        if same is not None:
            return same and _finite(vectors[0])
    return bool((vectors.amax(dim=0) == vectors.amin(dim=0)).all()) and _finite(vectors[0])
