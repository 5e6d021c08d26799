"""Golden outputs: what each behaviour version computes, kept in goldens.json.

    python tests/goldens.py --update     rewrite tests/goldens.json from this tree

tests/test_goldens.py compares the code with the file: every defense's output on fixed
inputs (three calls in a row, so state and randomness count), every attack's vectors,
every task's data and model, and short canary runs of the harness. A golden that changes
while its version stays the same fails there: bump the version of what changed (a
plugin's `version=`, or benchmark.behaviour.HARNESS for the harness), which makes the
stored results it produced stale, then update this file. A refactor changes no golden.

What is exact across machines (data, the model's seeded initialisation) is kept as a
hash; computed numbers are kept as values and compared within a relative tolerance
(TOLERANCE), because BLAS libraries sum in different orders on different CPUs (the same
torch gives other last bits on an AMD EPYC than on an Intel Xeon): floating-point noise
is not a behaviour change, anything larger is.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmark import behaviour, engine, registry  # noqa: E402
from benchmark.api import UsageError  # noqa: E402
from benchmark.config import make_config  # noqa: E402
from benchmark.plugins import BoundAttack, BoundDefense, PluginFailure  # noqa: E402

FILE = Path(__file__).with_name("goldens.json")
SHAPES = ((11, 2), (11, 3), (15, 3), (23, 5), (31, 7))  # (n, f): the first a rule accepts
D = 40
TOLERANCE = {"plugin": 1e-5, "canary": 1e-4}  # relative; absolute floor 1e-7 (see close)
CANARY_COLUMNS = ("loss", "theta_distance", "honest_deviation", "honest_norm", "attack_norm",
                  "defense_norm", "byzantine_selected", "lr", "points", "server_drift",
                  "server_drift_ratio", "gathered")

# Short harness runs: every placement, Nesterov, dampening, clean and data-level attacks,
# a composition, local steps, a non-i.i.d. split, f_real, metrics off, no clipping, the
# server's root data (FLTrust), partial participation, replicated servers (Byzantine
# servers, workers that equivocate, a data-level attack, momentum at each server).
CANARIES = {
    "median-little-worker": dict(defense="median", attack="little", momentum_at="worker"),
    "krum-empire-update-nesterov": dict(defense="krum", attack="empire", momentum_at="update",
                                        nesterov=True),
    "trmean-labelflip-server": dict(defense="trmean", attack="labelflip", momentum_at="server"),
    "cclip-signflip-dampening": dict(defense="cclip", attack="signflip", momentum_at="worker",
                                     dampening=0.1),
    "nnm+median-minmax-f4": dict(defense="nnm+median", attack="minmax", momentum_at="worker",
                                 f=4),
    "average-clean-update": dict(defense="average", attack="none", momentum_at="update"),
    "median-little-local-steps": dict(defense="median", attack="little", momentum_at="worker",
                                      local_steps=2),
    "median-little-dirichlet": dict(defense="median", attack="little", momentum_at="worker",
                                    split="dirichlet", alpha=0.5),
    "mda-gaussian-f-real": dict(defense="mda", attack="gaussian", momentum_at="update",
                                f_real=1),
    "average-little-bare": dict(defense="average", attack="little", momentum_at="update",
                                metrics=False, clip=None),
    "fltrust-little-worker": dict(defense="fltrust", attack="little", momentum_at="worker"),
    "median-little-participation": dict(defense="median", attack="little",
                                        momentum_at="worker", participants=8),
    "median-little-servers-equivocation": dict(defense="median", attack="little",
                                               momentum_at="worker", servers=3,
                                               byzantine_servers=1,
                                               server_attack="model-little", gather_every=3,
                                               worker_equivocation=True),
    "bucketing+trmean-labelflip-servers-server": dict(
        defense="bucketing:s=2+trmean", attack="labelflip", momentum_at="server", servers=4,
        byzantine_servers=1, server_attack="model-empire", gather_every=2, pull_rule="meamed"),
    "median-gaussian-servers-random-rules": dict(
        defense="median", attack="gaussian", momentum_at="worker", servers=5,
        byzantine_servers=1, server_attack="model-little", gather_every=2,
        gather_rule="dnc", pull_rule="bucketing:s=2+median", worker_equivocation=True),
    "median-labelflip-equivocating-servers": dict(
        defense="median", attack="labelflip", momentum_at="worker", servers=5,
        byzantine_servers=1, server_attack="equivocation", gather_every=3,
        gather_rule="bucketing:s=2+median"),
    "fashion-mnist-median-little": dict(task="fashion-mnist", defense="median",
                                        attack="little", momentum_at="worker", n=7, f=2,
                                        batch_size=8, steps=3, eval_every=3),
}
CANARY_DEFAULTS = dict(task="digits", steps=12, eval_every=4, seed=3)


def _digest(*parts) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            hasher.update(str((tuple(part.shape), str(part.dtype))).encode())
            hasher.update(part.numpy().tobytes() if part.dtype != torch.bfloat16
                          else part.float().numpy().tobytes())
        else:
            hasher.update(json.dumps(part, sort_keys=True, default=repr).encode())
    return hasher.hexdigest()


def _values(part):
    """A JSON-able copy of a result: tensors as nested lists of floats."""
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().double().tolist()
    if isinstance(part, (list, tuple)):
        return [_values(item) for item in part]
    return part


def close(stored, actual, tolerance: float, where: str = "") -> str | None:
    """Where `actual` differs from `stored` by more than `tolerance` (relative, with an
    absolute floor of 1e-7), or None; NaN equals NaN."""
    if isinstance(stored, dict) and isinstance(actual, dict):
        if sorted(stored) != sorted(actual):
            return f"{where}: keys {sorted(actual)} instead of {sorted(stored)}"
        for key in sorted(stored):
            problem = close(stored[key], actual[key], tolerance, f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(stored, list) and isinstance(actual, list):
        if len(stored) != len(actual):
            return f"{where}: {len(actual)} items instead of {len(stored)}"
        for index, (a, b) in enumerate(zip(stored, actual)):
            problem = close(a, b, tolerance, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(stored, float) and isinstance(actual, (int, float)):
        if math.isnan(stored) and math.isnan(actual):
            return None
        if stored == actual or abs(stored - actual) <= tolerance * abs(stored) + 1e-7:
            return None
        return f"{where}: {actual!r} instead of {stored!r}"
    return None if stored == actual else f"{where}: {actual!r} instead of {stored!r}"


def _inputs(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(n, D, generator=generator)
    rows[0] = rows[1]                      # a tie
    rows[-1] *= 25                         # an outlier
    return rows


def defense_golden(name: str) -> list:
    spec = registry.lookup("defense", name).spec
    text = f"{name}+average" if spec.preaggregator else name
    for n, f in SHAPES:
        bound = BoundDefense(text, f, torch.Generator().manual_seed(7))
        try:
            bound.check(n)
        except UsageError:
            continue
        parts = [n, f]
        for call in range(3):
            if bound.uses_server_data:  # the server's own update: one more honest-like row
                bound.server_gradient = _inputs(2, 300 + call)[1]
            try:
                vector, selected = bound(_inputs(n, 100 + call))
                parts += [vector, selected if selected is not None else "-"]
            except PluginFailure as failure:
                parts.append(str(failure))
        return _values(parts)
    return ["no shape accepted"]


def attack_golden(name: str) -> list:
    spec = registry.lookup("attack", name).spec
    parts = [spec.absent, spec.clean]
    if spec.flip_labels is not None:
        targets = torch.arange(40) % 10
        parts.append(spec.flip_labels(targets.clone(), 10))
    for f in (2, 3):
        honest = _inputs(11 - f, 200 + f)
        attack = BoundAttack(name, f, torch.Generator().manual_seed(9))
        parts.append(attack.f)
        if attack.sends_vectors and spec.attack is not None:
            defense = BoundDefense("median", f, torch.Generator().manual_seed(8))
            try:
                parts.append(attack(honest, defense))
            except PluginFailure as failure:
                parts.append(str(failure))
    return _values(parts)


def task_goldens(name: str) -> dict:
    """{"model": hash, "data": hash, "loss": value}; data and loss only where the task's
    dataset is present."""
    spec = registry.lookup("task", name).spec
    torch.manual_seed(11)
    model = spec.model()
    goldens = {"model": _digest(spec.defaults, *(p for p in model.state_dict().values()))}
    try:
        data = engine.load_task_data(name, None)
    except (UsageError, OSError):
        return goldens
    train = data.train_inputs[:64]
    with torch.no_grad():
        model.eval()
        loss = spec.loss(model(train.float() if train.dtype != torch.float32 else train),
                         data.train_targets[:64])
    goldens["data"] = _digest(len(data.train_targets), len(data.test_targets),
                              data.num_classes, train, data.train_targets[:64],
                              data.test_inputs[-16:], data.test_targets[-16:])
    goldens["loss"] = float(loss)
    return goldens


def canary_config(name: str):
    return make_config(**{**CANARY_DEFAULTS, **CANARIES[name]})


def canary_golden(name: str) -> dict | None:
    """A short run's status, metrics (CANARY_COLUMNS) and evaluations; None if its data
    is absent."""
    config = canary_config(name)
    try:
        engine.load_task_data(config.task, None)
    except (UsageError, OSError):
        return None
    steps, evaluations = [], []
    outcome = engine.run(config, steps.append, evaluations.append)
    return {"status": outcome.status, "reason": outcome.reason,
            "steps": [[row.get(column, math.nan) for column in CANARY_COLUMNS] for row in steps],
            "evaluations": [[row["step"], row["accuracy"], row["loss"]] for row in evaluations]}


def canary_versions(name: str) -> dict:
    return behaviour.of_config(canary_config(name))


def compute() -> dict:
    torch.set_num_threads(1)
    goldens: dict = {"harness": behaviour.HARNESS, "defense": {}, "attack": {}, "task": {},
                     "canary": {}}
    for kind in ("defense", "attack"):
        for name, plugin in sorted(registry.discover(kind).items()):
            if plugin.error is None:
                compute_one = defense_golden if kind == "defense" else attack_golden
                goldens[kind][name] = {"version": plugin.spec.version,
                                       "output": compute_one(name)}
    for name, plugin in sorted(registry.discover("task").items()):
        if plugin.error is None:
            goldens["task"][name] = {"version": plugin.spec.version, **task_goldens(name)}
    for name in CANARIES:
        run = canary_golden(name)
        if run is not None:
            goldens["canary"][name] = {"versions": canary_versions(name), "run": run}
    return goldens


def load() -> dict:
    return json.loads(FILE.read_text())


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print(__doc__)
        return 2
    np.seterr(all="ignore")
    FILE.write_text(json.dumps(compute(), sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
