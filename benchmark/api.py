"""The public plugin surface: what a defense, attack or task module exposes.

Plugins import from here and nowhere else in `benchmark`. Each plugin module
defines one module-level object (`defense`, `attack` or `task`) built from the
dataclasses below; discovery (benchmark.registry) finds it by scanning the
plugin folders, so adding a file is all it takes to register a plugin.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

# Kernels several plugins share, defined in their own modules and offered here so that
# plugins import from this module only.
from benchmark.aggregated import Aggregated
from benchmark.coordinates import (
    coordinate_mean_around_median, coordinate_mean_around_trimmed_mean, coordinate_median,
    coordinate_statistic, coordinate_trimmed_mean, mean_around_median, mean_closest,
    median_of_sorted, sorted_coordinates,
)
from benchmark.distances import (
    distances_and_finite, finite_rows, gram_matrix, krum_bound, krum_check, krum_select,
    mean_of_rows, neighbour_sums, pairwise_sq_distances, selection_count, smallest_first,
    weighted_sum,
)
from benchmark.requirements import AtLeast

__all__ = [
    "Aggregated", "AtLeast", "Attack", "Defense", "Task", "TaskData", "UsageError",
    "coordinate_mean_around_median", "coordinate_mean_around_trimmed_mean",
    "coordinate_median", "coordinate_statistic",
    "coordinate_trimmed_mean",
    "distances_and_finite", "finite_rows",
    "gram_matrix", "krum_bound", "krum_check", "krum_select", "mean_around_median",
    "mean_closest", "mean_of_rows", "median_of_sorted", "neighbour_sums",
    "pairwise_sq_distances", "selection_count", "smallest_first", "sorted_coordinates",
    "weighted_sum",
]


INJECTED = ("generator", "state", "server_gradient")  # what the harness supplies, not the user


def keyword_defaults(function: Callable | None) -> dict[str, Any]:
    """The options a plugin function declares: its parameters that have defaults, in order,
    except those the harness injects. A plugin's `options` default to its own function's."""
    if function is None:
        return {}
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not parameter.empty and name not in INJECTED}


class _Declared:
    """What defenses and attacks share: a requirement on (n, f) declared once as `needs`
    (its text, `requirement`, follows from it), options whose defaults are those of the
    plugin's function unless given, and an option `check`."""

    def _declare(self, function: Callable | None) -> None:
        if not self.requirement:
            object.__setattr__(self, "requirement", str(self.needs))
        if not self.options:
            object.__setattr__(self, "options", keyword_defaults(function))

    def reason(self, n: int, f: int, **options) -> str | None:
        """Why the plugin cannot run with n rows (servers, for a server attack), f and
        `options`, or None: `needs` first, so that its own `check` may take it as met."""
        return self.needs.reason(self.name, n, f) or (
            self.check(n, f, **options) if self.check else None)


class UsageError(Exception):
    """Bad input from the user: the CLI prints the message and exits with code 2."""


@dataclass(frozen=True)
class Defense(_Declared):
    """A gradient aggregation rule (GAR).

    aggregate(gradients: Tensor[n, d], f: int, **options) -> Tensor[d] | Aggregated
        `gradients` rows come in a fresh random order each step. Must not modify
        `gradients`, nor keep it past the call (its memory holds the next step's rows:
        clone what `state` keeps). Randomized rules also receive `generator=torch.Generator`,
        stateful rules `state=dict` (kept by the harness for the whole run), rules
        that declare `server_gradient=True` the server's own update
        `server_gradient=Tensor[d]` (see below; must not modify it either).
        A pre-aggregator (`preaggregator=True`) returns Tensor[m, d] instead and
        composes with any rule as `name+rule`.
    needs: the requirement on n and f, e.g. `AtLeast(2, 1)` for n >= 2f+1; the harness
        checks it, and `requirement` (the text shown in listings) defaults to it.
    options: every option with its default (typed by it); by default the keyword
        defaults of `aggregate`, so that a rule writes each default once.
    check(n, f, **options) -> str | None: why the options (or an (n, f) that `needs`
        cannot express) are invalid, or None. `reason` runs both, `needs` first.
    upper_bound(n, f, d) -> float | None: the bound on the honest
        deviation / norm ratio under which the guarantee holds.
    resize(n, f, **options) -> (n, f): for a pre-aggregator, the (n, f) that the
        next component of a composition sees (None: unchanged), e.g. bucketing
        hands ceil(n/s) rows on.
    keeps_rows: for a pre-aggregator, whether output row i still stands for
        worker i (so a selecting rule after it still reports Byzantine picks).
    server_gradient: the rule assumes FLTrust's threat model, a server that holds a
        small clean *root* data set of its own (RunConfig.root_size examples, drawn once
        per run from the task's training set by the run's "root" stream and left out of
        the workers' data). Each step the rule receives `server_gradient=`, the
        server's update on its root set at the current parameters, computed as an honest
        worker computes its submission (benchmark.stages.root): a batch of batch_size
        root examples, the task's loss plus l2, local steps, clipping, and the same
        momentum as the workers' (with momentum at the workers the server keeps its own
        momentum of root gradients; at the server, the previous aggregate is added as
        the workers add it; at the update, the plain clipped gradient). Only runs of
        such a rule draw a root set and compute it; in a composition, only the
        component that declares it receives it; the leaderboard ranks such rules in a
        section of their own. Replicated servers (servers > 1) are refused.
    version: the behaviour version (see benchmark.behaviour): bump it when the rule
        computes different numbers, and its stored results become stale.
    """
    name: str
    aggregate: Callable[..., Any]
    description: str = ""
    reference: str = ""
    needs: AtLeast = AtLeast()
    requirement: str = ""
    check: Callable[..., str | None] | None = None
    upper_bound: Callable[[int, int, int], float | None] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    randomized: bool = False
    stateful: bool = False
    preaggregator: bool = False
    resize: Callable[..., tuple[int, int]] | None = None
    keeps_rows: bool = False
    server_gradient: bool = False
    version: int = 1

    def __post_init__(self):
        self._declare(self.aggregate)


@dataclass(frozen=True)
class _Sender(_Declared):
    """What a worker attack (`Attack`) and a server attack (`ServerAttack`) both declare."""
    name: str
    attack: Callable[..., torch.Tensor] | None = None
    description: str = ""
    reference: str = ""
    needs: AtLeast = AtLeast()
    requirement: str = ""
    check: Callable[..., str | None] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    randomized: bool = False
    stateful: bool = False
    absent: bool = False
    clean: bool = False
    version: int = 1

    def __post_init__(self):
        self._declare(self.attack)


@dataclass(frozen=True)
class Attack(_Sender):
    """A Byzantine attack.

    attack(honest: Tensor[h, d], f: int, defense, **options) -> Tensor[f, d]
        `honest` holds the vectors honest workers submit (after momentum);
        `defense(gradients) -> Tensor[d]` runs the defense under evaluation with
        its declared f, for attacks that search against it. Must not modify
        `honest`. Randomized attacks also receive `generator=torch.Generator`,
        stateful attacks `state=dict` (kept by the harness for the whole run, saved
        with its checkpoints).
    needs: the requirement on n and f (`AtLeast`), as for a defense; check(n, f,
        **options) -> str | None: why the options are invalid; `reason` runs both.
    absent=True: the Byzantine workers send nothing (the defense sees n - f rows).
    flip_labels(targets, num_classes) -> targets: a data-level attack; the
        Byzantine workers then compute honest gradients on the altered batch.
    clean=True: no attack at all: the f Byzantine workers behave as honest ones
        (the defense sees n honest rows and is still told f).
    version: the behaviour version (benchmark.behaviour); bump it when the attack
        sends different vectors.
    """
    flip_labels: Callable[[torch.Tensor, int], torch.Tensor] | None = None


@dataclass(frozen=True)
class ServerAttack(_Sender):
    """What the Byzantine parameter servers send when the server is replicated
    (RunConfig.servers > 1, ByzSGD).

    attack(models: Tensor[c, d], f: int, recipients: int, **options)
            -> Tensor[f, d] or Tensor[f, recipients, d]
        `models` holds the correct servers' current models; the result is what each of
        the f Byzantine servers sends, the same to every recipient ([f, d]) or one model
        per recipient ([f, recipients, d]: equivocation). It is called when the honest
        workers pull models (recipients: the honest workers) and at each gather
        (recipients: the correct servers). Must not modify `models`. Randomized attacks
        also receive `generator=`, stateful ones `state=` (a dict kept for the run).
    needs (on n_servers and f) and check(n_servers, f, **options) -> str | None, as for
        a worker attack.
    absent=True: the Byzantine servers send nothing (silence).
    clean=True: no attack: every server is correct, the rules are still told f.
    """


@dataclass(frozen=True)
class TaskData:
    """Tensors prepared once: inputs in the model's layout, integer class targets."""
    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> "TaskData":
        return TaskData(*(t.to(device) for t in (self.train_inputs, self.train_targets,
                                                  self.test_inputs, self.test_targets)),
                        num_classes=self.num_classes)


@dataclass(frozen=True)
class Task:
    """A learning task: data, model, loss and default hyper-parameters.

    load(data_dir: str | None) -> TaskData
    model() -> torch.nn.Module  (initialised from torch's global generator,
        which the harness seeds from the run's seed)
    loss(outputs, targets) -> scalar Tensor (mean over the batch)
    defaults: hyper-parameters; any key of benchmark.config.RunConfig,
        plus `f_values`, the f values a matrix profile uses for this task.
    version: the behaviour version (benchmark.behaviour); bump it when the data,
        the model or the loss change what a run computes.
    """
    name: str
    load: Callable[[str | None], TaskData]
    model: Callable[[], torch.nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.nn.functional.cross_entropy
    description: str = ""
    reference: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    version: int = 1

