"""Bucketing (pre-aggregator): shuffle the rows and average buckets of s consecutive
ones (the last bucket may be smaller), handing ceil(n/s) rows to the next rule.
Each Byzantine row spoils at most one bucket, so the next rule keeps f.
Compose it with a rule: `bucketing+median`, `bucketing:s=3+krum`.
"""
import math

import torch

from benchmark.api import Defense


def aggregate(gradients, f, s=2, *, generator):
    n = gradients.shape[0]
    order = torch.randperm(n, generator=generator).to(gradients.device)
    bucket = torch.arange(n, device=gradients.device) // s
    sums = torch.zeros(math.ceil(n / s), gradients.shape[1], dtype=gradients.dtype,
                       device=gradients.device).index_add_(0, bucket, gradients[order])
    sizes = torch.bincount(bucket).to(gradients.dtype)
    return sums / sizes[:, None]


def check(n, f, s):
    return None if s >= 1 else f"bucket size s must be >= 1, not {s}"


defense = Defense(
    name="bucketing",
    aggregate=aggregate,
    check=check,
    requirement="s >= 1 (the next rule sees ceil(n/s) rows and f)",
    randomized=True,
    preaggregator=True,
    resize=lambda n, f, s: (math.ceil(n / s), f),
    description="Pre-aggregator: average random buckets of s rows; the next rule sees "
                "ceil(n/s) rows; compose as bucketing+RULE",
    reference="Karimireddy, He, Jaggi, Byzantine-robust learning on heterogeneous datasets "
              "via bucketing, ICLR 2022",
)
