"""The statistics behind the ranks: means with 95 % intervals over seeds, paired t-tests
between defenses over shared seeds, Holm's correction, and ranks that never put a lower
mean above a higher one.

Runs with the same seed share the model's initialisation and the data order, so two
defenses are compared by their per-seed differences (a paired test), which removes the
seed-to-seed variation they share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05        # family-wise error rate of each defense's comparisons
MIN_SEEDS = 3       # fewer shared seeds: no difference is called significant

STATEMENT = (
    f"**Rank**: 1 + the number of defenses significantly better, never better than the rank "
    f"of a defense with a higher mean. *Significantly better*: a higher mean, and a two-sided "
    f"paired t-test over the seeds both share (same seed = same initialisation and data "
    f"order) rejects equal means at α = {ALPHA:g} after Holm's correction over the "
    f"defense's comparisons in the table; with fewer than {MIN_SEEDS} shared seeds nothing is "
    f"significant. Defenses with the same rank are a tie group. ± is the half-width of the "
    f"95 % t-interval of the mean over seeds.")


@dataclass(frozen=True)
class Stat:
    """Mean over seeds, sample standard deviation, seed count and the 95 % t-interval's
    half-width (nan with fewer than 2 values)."""
    mean: float
    std: float
    k: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        k = len(values)
        mean = math.fsum(values) / k
        std = (math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
               if k > 1 else math.nan)
        return cls(mean, std, k)

    @property
    def half_width(self) -> float:
        if self.k < 2:
            return math.nan
        return float(stats.t.ppf(0.975, self.k - 1)) * self.std / math.sqrt(self.k)


def paired_p_value(a: dict, b: dict) -> float:
    """Two-sided p-value of a paired t-test of equal means over the seeds `a` and `b`
    (seed -> value) share; 1.0 with fewer than MIN_SEEDS shared seeds. Identical
    differences on every seed give 0 (if not all zero) or 1."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < MIN_SEEDS:
        return 1.0
    differences = [a[s] - b[s] for s in seeds]
    diff = Stat.of(differences)
    if diff.std == 0 or math.isnan(diff.std):
        return 1.0 if diff.mean == 0 else 0.0
    t = diff.mean / (diff.std / math.sqrt(diff.k))
    return float(2 * stats.t.sf(abs(t), diff.k - 1))


def holm_rejections(p_values: dict[str, float], alpha: float = ALPHA) -> set[str]:
    """The hypotheses Holm's step-down procedure rejects at family-wise level `alpha`."""
    ordered = sorted(p_values.items(), key=lambda item: (item[1], item[0]))
    rejected = set()
    for index, (name, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - index):
            break
        rejected.add(name)
    return rejected


def significantly_better_than(name: str, per_seed: dict[str, dict],
                              means: dict[str, float]) -> set[str]:
    """The defenses significantly better than `name` (per_seed: defense -> seed -> value;
    means: defense -> its mean over seeds)."""
    mine = per_seed[name]
    family = {other: paired_p_value(values, mine) for other, values in per_seed.items()
              if other != name}
    return {other for other in holm_rejections(family) if means[other] > means[name]}


def ranks(per_seed: dict[str, dict]) -> dict[str, int]:
    """rank = 1 + the number of defenses significantly better; then, in order of
    decreasing mean, no defense ranks better than one with a higher mean."""
    means = {name: Stat.of(list(values.values())).mean for name, values in per_seed.items()
             if values}
    per_seed = {name: per_seed[name] for name in means}
    raw = {name: 1 + len(significantly_better_than(name, per_seed, means)) for name in means}
    result, floor = {}, 1
    for name in sorted(means, key=lambda n: (-means[n], n)):
        floor = max(floor, raw[name])
        result[name] = floor
    return result
