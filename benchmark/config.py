"""The resolved configuration of one run, and its hash.

A run is a pure function of its RunConfig (on CPU): task defaults fill what the
user leaves out, plugin names are canonicalised, and the hash covers every
field that can change a number.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from . import registry
from .api import UsageError
from .sampling import SPLITS

PLACEMENTS = ("update", "worker", "server")
GRADIENT_METHODS = ("auto", "fused", "vmap", "loop")  # benchmark.gradients
# change where, how long or how often a run is saved, never what is computed
NOT_HASHED = {"time_budget", "data_dir", "checkpoint_every"}
# Fields left out of the hash while they hold the value that computes what a run did
# before the field existed, so adding a field keeps every stored result's hash. A new
# RunConfig field gets an entry here: its name and that value.
NEUTRAL = {"f_real": None, "split": "iid", "alpha": 1.0, "shards": 2, "local_steps": 1,
           "servers": 1, "byzantine_servers": 0, "gather_every": 10, "gather_rule": "median",
           "pull_rule": "median", "server_attack": "none", "worker_equivocation": False,
           "participants": None, "root_size": 100, "attack_jitter": 0.0}


@dataclass(frozen=True)
class RunConfig:
    task: str = "digits"
    defense: str = "average"
    attack: str = "none"
    momentum_at: str = "worker"
    n: int = 11
    f: int = 2                     # declared f: what the defense is told
    f_real: int | None = None      # workers that really attack; None means f
    seed: int = 1
    steps: int = 100
    batch_size: int = 32
    lr: float = 0.1
    lr_schedule: tuple[tuple[int, float], ...] = ()  # (from step, lr) pairs, piecewise constant
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    clip: float | None = 2.0       # honest gradient norm clip; None disables it
    l2: float = 1e-4
    eval_every: int = 10
    metrics: bool = True           # per-step variance/norm/cosine metrics
    past_window: int = 5           # steps in the composite-curvature sum
    gradients: str = "auto"        # per-worker gradient method: auto | fused | vmap | loop
    split: str = "iid"             # workers' data: iid | dirichlet (alpha) | shards (shards)
    alpha: float = 1.0             # Dirichlet concentration per class (split = dirichlet)
    shards: int = 2                # label-sorted shards per worker (split = shards)
    local_steps: int = 1           # local SGD steps per worker between communications
    # Replicated parameter servers (ByzSGD; benchmark.stages.replicas). 1 server: the
    # plain parameter-server run; the other settings then change nothing.
    servers: int = 1               # n_ps
    byzantine_servers: int = 0     # f_ps
    gather_every: int = 10         # T: correct servers exchange models every T steps
    gather_rule: str = "median"    # model rule at a gather (median: DMC); any defense
    pull_rule: str = "median"      # what a worker applies to the models it pulls
    server_attack: str = "none"    # what the Byzantine servers send (server_attacks/)
    worker_equivocation: bool = False  # Byzantine workers send different servers different
    # vectors (Adversary.equivocated)
    # Partial participation (benchmark.stages.participation): workers drawn each step;
    # None: all n
    participants: int | None = None
    # The server's root data set (FLTrust's threat model; benchmark.stages.root): examples
    # drawn from the training set, held by the server and left out of the workers' data;
    # drawn only for a defense that declares `server_gradient`. 100: FLTrust's.
    root_size: int = 100
    # Seeded noise added to each finite Byzantine vector, of this size relative to the
    # vector's RMS coordinate, so that no two are bit-identical (a defense could otherwise
    # drop exact twins); 0: the attacks' own definitions (benchmark.stages.adversary).
    attack_jitter: float = 0.0
    device: str = "cpu"
    profile: str = "adhoc"
    time_budget: float | None = None  # seconds; the run fails past it
    data_dir: str | None = None
    checkpoint_every: int | None = None  # steps between checkpoints (None: none)

    @property
    def byzantine(self) -> int:
        return self.f if self.f_real is None else self.f_real

    def lr_at(self, step: int) -> float:
        lr = self.lr
        for start, value in self.lr_schedule:
            if step >= start:
                lr = value
        return lr

    def to_dict(self) -> dict[str, Any]:
        # every field is immutable (lr_schedule is a tuple of tuples): no deep copy needed
        return {name: getattr(self, name) for name in FIELDS}

    def hash(self) -> str:
        cached = self.__dict__.get("_hash")
        if cached is None:  # computed once: the leaderboard hashes every expected cell
            identity = {k: v for k, v in self.to_dict().items()
                        if k not in NOT_HASHED and (k not in NEUTRAL or v != NEUTRAL[k])}
            text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
            cached = hashlib.sha256(text.encode()).hexdigest()[:16]
            object.__setattr__(self, "_hash", cached)
        return cached

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        values = dict(values)
        values["lr_schedule"] = tuple(tuple(pair) for pair in values.get("lr_schedule", ()))
        return cls(**values)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
TASK_ONLY_DEFAULTS = {"f_values"}
_KINDS = {name: typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
          for name, hint in typing.get_type_hints(RunConfig).items()}  # field -> its types
_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false",
               str: "a string", tuple: "a list", type(None): "null"}


def _accepted(kinds: tuple) -> tuple[tuple, bool]:
    """(the classes a value of one of `kinds` may be an instance of, whether a bool is
    refused). Not coerced: an int is a valid float (a profile's `l2 = 0`, `--set lr=1`)
    and keeps the hash it always had; a bool is no number."""
    classes = {typing.get_origin(kind) or kind for kind in kinds}
    if float in classes:
        classes.add(int)
    return tuple(classes), bool(classes & {int, float}) and bool not in classes


_ACCEPTED = {name: _accepted(kinds) for name, kinds in _KINDS.items()}  # checked per config


def type_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be the setting `name` (a float for an int field, text for a
    number, ...), or None."""
    classes, refuses_bool = _ACCEPTED[name]
    if isinstance(value, classes) and not (refuses_bool and isinstance(value, bool)):
        return None
    kinds = _KINDS[name]
    expected = " or ".join(_KIND_NAMES.get(typing.get_origin(k) or k, str(k)) for k in kinds)
    return f"{name} must be {expected}, not {value!r}"


def _typed(name: str, value: Any) -> Any:
    if name == "lr_schedule":
        try:
            pairs = tuple((int(step), float(lr)) for step, lr in value)
        except (TypeError, ValueError):
            raise UsageError(f"lr_schedule must be (step, lr) pairs, got {value!r}") from None
        return pairs
    return value


def make_config(**overrides: Any) -> RunConfig:
    """Task defaults, then `overrides` (None values are ignored); validated and canonical."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise UsageError(f"unknown setting(s) {sorted(unknown)}; settings: {sorted(FIELDS)}")
    task = registry.lookup("task", overrides.get("task", RunConfig.task)).spec
    values: dict[str, Any] = {}
    for key, value in task.defaults.items():
        if key in FIELDS:
            values[key] = value
        elif key not in TASK_ONLY_DEFAULTS:
            raise UsageError(f"task {task.name!r} has an unknown default {key!r}")
    if "f" not in values and task.defaults.get("f_values"):
        values["f"] = task.defaults["f_values"][0]
    values.update(overrides)
    values = {k: _typed(k, v) for k, v in values.items()}
    values["defense"] = registry.label(registry.resolve("defense", values.get("defense", "average")))
    values["attack"] = registry.label(registry.resolve("attack", values.get("attack", "none")))
    for key in ("gather_rule", "pull_rule"):
        if key in values:
            values[key] = registry.label(registry.resolve("defense", values[key]))
    if "server_attack" in values:
        values["server_attack"] = registry.label(registry.resolve("server_attack",
                                                                  values["server_attack"]))
    config = RunConfig(**values)
    validate(config)
    return config


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def participation_problems(config: RunConfig) -> list[str]:
    m = config.participants
    if m is None:
        return []
    if not config.byzantine < m <= config.n:
        return [f"participants={m} must be more than f_real={config.byzantine} (so an honest "
                f"worker always takes part) and at most n={config.n}"]
    if config.servers > 1:
        return ["participants (partial participation) works with one server; drop "
                "--participants or set servers=1"]
    return []


def validate(config: RunConfig) -> None:
    """Checks of the settings themselves; plugin `check`s run in benchmark.engine."""
    problems = [problem for problem in (type_problem(name, getattr(config, name))
                                        for name in FIELDS) if problem]
    if problems:  # the checks below compare numbers
        raise UsageError("; ".join(problems))
    if config.momentum_at not in PLACEMENTS:
        problems.append(f"momentum_at must be one of {', '.join(PLACEMENTS)}, "
                        f"not {config.momentum_at!r}")
    if config.n < 1:
        problems.append(f"n must be at least 1, not {config.n}")
    if config.f < 0 or config.byzantine < 0:
        problems.append("f and f_real must be non-negative")
    if config.byzantine >= config.n:
        problems.append(f"f_real={config.byzantine} leaves no honest worker among n={config.n}; "
                        "lower f (or f_real) or raise n")
    for name in ("steps", "batch_size", "eval_every", "past_window", "local_steps", "servers",
                 "gather_every", "root_size"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be at least 1, not {getattr(config, name)}")
    if config.seed < 0:
        problems.append(f"seed must be a non-negative whole number, not {config.seed}")
    if config.time_budget is not None and not (_finite(config.time_budget)
                                               and config.time_budget > 0):
        problems.append(f"time_budget must be a positive finite number of seconds (or "
                        f"omitted for the default), not {config.time_budget}")
    if not 0 <= config.momentum < 1:
        problems.append(f"momentum must be in [0, 1), not {config.momentum}")
    if not 0 <= config.dampening <= 1:
        problems.append(f"dampening must be in [0, 1], not {config.dampening}")
    if config.nesterov and config.momentum_at == "server":
        problems.append("Nesterov momentum is defined for momentum at 'update' or 'worker', "
                        "not 'server'")
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        problems.append(f"checkpoint_every must be at least 1 step (or omitted), "
                        f"not {config.checkpoint_every}")
    if config.clip is not None and not (_finite(config.clip) and config.clip > 0):
        problems.append(f"clip must be a positive finite number (or omitted to disable), "
                        f"not {config.clip}")
    if not (_finite(config.lr) and config.lr > 0):
        problems.append(f"lr must be a positive finite number, not {config.lr}")
    if any(not (_finite(lr) and lr > 0 and step >= 0) for step, lr in config.lr_schedule):
        problems.append(f"lr_schedule must hold (step >= 0, lr) pairs with positive finite "
                        f"lrs, not {[list(pair) for pair in config.lr_schedule]}")
    if not (_finite(config.l2) and config.l2 >= 0):
        problems.append(f"l2 must be a non-negative finite number, not {config.l2}")
    if not (_finite(config.attack_jitter) and config.attack_jitter >= 0):
        problems.append(f"attack_jitter must be a non-negative finite number, not "
                        f"{config.attack_jitter}")
    if config.gradients not in GRADIENT_METHODS:
        problems.append(f"gradients must be one of {', '.join(GRADIENT_METHODS)}, "
                        f"not {config.gradients!r}")
    if config.split not in SPLITS:
        problems.append(f"split must be one of {', '.join(SPLITS)}, not {config.split!r}")
    if not (_finite(config.alpha) and config.alpha > 0):
        problems.append(f"alpha (the Dirichlet concentration) must be positive, not {config.alpha}")
    if config.shards < 1:
        problems.append(f"shards (per worker) must be at least 1, not {config.shards}")
    if not 0 <= config.byzantine_servers < config.servers:
        problems.append(f"byzantine_servers must be in [0, servers), not "
                        f"{config.byzantine_servers} with servers={config.servers}")
    if config.worker_equivocation and config.servers - config.byzantine_servers < 2:
        problems.append("worker_equivocation needs at least 2 correct servers to tell apart "
                        "(servers - byzantine_servers >= 2)")
    problems += participation_problems(config)
    if problems:
        raise UsageError("; ".join(problems))
    if config.servers > 1:
        from .stages.replicas import check_model_rules  # the plugins' own checks
        check_model_rules(config)
