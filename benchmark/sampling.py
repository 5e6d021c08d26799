"""Which training examples each worker uses at each step.

The i.i.d. sampler (split 'iid', the default) draws every worker's batch from one
stream of seeded epoch permutations of the training set, so batches within a step
are disjoint whenever the set is large enough, and the whole order follows from the
seed. The non-i.i.d. splits ('dirichlet', 'shards') first partition the training
set among the n workers (seeded from the same stream), then each worker draws from
its own part: per-worker data, as in federated learning.

When the server holds a root data set of its own (FLTrust's threat model,
benchmark.stages.root), its examples are left out: the workers' sampler then runs over
the remaining examples (`Subset`), drawn exactly as above on that smaller set.
"""
from __future__ import annotations

import numpy as np
import torch

from .api import UsageError


class IidSampler:
    def __init__(self, size: int, batch_size: int, generator: torch.Generator):
        self.size = size
        self.batch_size = batch_size
        self.generator = generator
        self.order = torch.randperm(size, generator=generator)
        self.position = 0

    def _take(self, count: int) -> torch.Tensor:
        pieces = []
        while count:
            if self.position == self.size:
                self.order = torch.randperm(self.size, generator=self.generator)
                self.position = 0
            piece = self.order[self.position:self.position + count]
            self.position += len(piece)
            count -= len(piece)
            pieces.append(piece)
        return torch.cat(pieces)

    def next_batches(self, workers: int) -> torch.Tensor:
        """Indices of shape [workers, batch_size]."""
        return self._take(workers * self.batch_size).view(workers, self.batch_size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = state["position"]


# --- heterogeneous (non-i.i.d.) splits ------------------------------------------------

SPLITS = ("iid", "dirichlet", "shards")


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from the run's torch stream (numpy has the Dirichlet law)."""
    return np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))


def dirichlet_partition(targets: torch.Tensor, workers: int, alpha: float,
                        generator: torch.Generator) -> list[torch.Tensor]:
    """Equal-size parts whose label distributions follow Dirichlet(alpha * C * prior).

    Each worker draws its label proportions q ~ Dir(alpha * C * prior) (C classes, prior the
    class frequencies: Dir(alpha, ..., alpha) on balanced data; large alpha tends to i.i.d.,
    small alpha to one label per worker), then takes N // workers examples by those
    proportions, without replacement. When a class runs out, the worker's remaining
    draws go to its other classes; workers are served in a random order so that this
    distortion does not fall systematically on the last (Byzantine) workers.
    """
    rng = _numpy_rng(generator)
    labels = targets.cpu().numpy()
    classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=classes)
    prior = counts / counts.sum()
    proportions = np.nan_to_num(rng.dirichlet(np.maximum(alpha * classes * prior, 1e-12),
                                              size=workers))
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(classes)]
    remaining = counts.copy()
    size = len(labels) // workers
    parts: list[np.ndarray | None] = [None] * workers
    for worker in rng.permutation(workers):
        taken, need = [], size
        while need:
            weights = proportions[worker] * (remaining > 0)
            if weights.sum() <= 0:
                weights = (remaining > 0).astype(float)
            draw = np.minimum(rng.multinomial(need, weights / weights.sum()), remaining)
            for c in np.flatnonzero(draw):
                start = counts[c] - remaining[c]
                taken.append(pools[c][start:start + draw[c]])
            remaining -= draw
            need -= int(draw.sum())
        parts[worker] = np.concatenate(taken)
    return [torch.from_numpy(part) for part in parts]


def shard_partition(targets: torch.Tensor, workers: int, shards: int,
                    generator: torch.Generator) -> list[torch.Tensor]:
    """McMahan et al. (2017): examples sorted by label, cut into workers * shards equal
    shards, each worker given `shards` shards at random (about `shards` labels each)."""
    rng = _numpy_rng(generator)
    labels = targets.cpu().numpy()
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    size = len(labels) // (workers * shards)
    pieces = by_label[:size * workers * shards].reshape(workers * shards, size)
    owner = rng.permutation(workers * shards).reshape(workers, shards)
    return [torch.from_numpy(pieces[row].reshape(-1)) for row in owner]


class PartitionSampler:
    """Per-worker data: worker i draws its batches from its own part only, through seeded
    permutations of that part. Parts follow worker order (honest workers first)."""

    def __init__(self, parts: list[torch.Tensor], batch_size: int, generator: torch.Generator):
        self.parts = parts
        self.batch_size = batch_size
        self.generator = generator
        self.orders = [part[torch.randperm(len(part), generator=generator)] for part in parts]
        self.positions = [0] * len(parts)

    def _take(self, worker: int) -> torch.Tensor:
        part, pieces, count = self.parts[worker], [], self.batch_size
        while count:
            if self.positions[worker] == len(part):
                self.orders[worker] = part[torch.randperm(len(part), generator=self.generator)]
                self.positions[worker] = 0
            start = self.positions[worker]
            piece = self.orders[worker][start:start + count]
            self.positions[worker] += len(piece)
            count -= len(piece)
            pieces.append(piece)
        return torch.cat(pieces)

    def next_batches(self, workers: int) -> torch.Tensor:
        """Indices of shape [workers, batch_size], row i from worker i's part."""
        return torch.stack([self._take(worker) for worker in range(workers)])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(),
                "orders": [order.clone() for order in self.orders],
                "positions": list(self.positions)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.orders = [order.clone() for order in state["orders"]]
        self.positions = list(state["positions"])


class Subset:
    """A sampler over some examples only: `sampler` draws positions in `indices` (a
    sorted Tensor of training-set indices), which `next_batches` turns into those
    examples' indices."""

    def __init__(self, sampler, indices: torch.Tensor):
        self.sampler, self.indices = sampler, indices

    def next_batches(self, workers: int) -> torch.Tensor:
        return self.indices[self.sampler.next_batches(workers)]

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def make_sampler(config, targets: torch.Tensor, generator: torch.Generator,
                 excluded: torch.Tensor | None = None):
    """The sampler of `config.split` ('iid', 'dirichlet' with `alpha`, 'shards' with
    `shards` per worker) over `targets`, for `config.n` workers; with `excluded` (indices
    of examples the workers never use: the server's root set), over the others only."""
    if excluded is not None:
        kept = torch.ones(len(targets), dtype=torch.bool)
        kept[excluded] = False
        indices = kept.nonzero().flatten()
        return Subset(make_sampler(config, targets.cpu()[indices], generator), indices)
    if config.split == "iid":
        return IidSampler(len(targets), config.batch_size, generator)
    if len(targets) < config.n:
        raise UsageError(f"split {config.split!r} would leave a worker without data: "
                         f"{len(targets)} training examples for n = {config.n} workers")
    if config.split == "dirichlet":
        parts = dirichlet_partition(targets, config.n, config.alpha, generator)
    elif config.split == "shards":
        if config.n * config.shards > len(targets):
            raise UsageError(f"split 'shards' needs n * shards = {config.n * config.shards} "
                             f"<= {len(targets)} training examples; lower shards")
        parts = shard_partition(targets, config.n, config.shards, generator)
    else:
        raise UsageError(f"unknown split {config.split!r}; choose from {', '.join(SPLITS)}")
    return PartitionSampler(parts, config.batch_size, generator)
