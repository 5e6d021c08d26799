"""Golden outputs: what each behaviour version computes, kept as hashes in goldens.json.

    python tests/goldens.py --update     rewrite tests/goldens.json from this tree

tests/test_goldens.py compares the code with the file: every defense's output on fixed
inputs (three calls in a row, so state and randomness count), every attack's vectors,
every task's data and model, and short canary runs of the harness. A golden that changes
while its version stays the same fails there: bump the version of what changed (a
plugin's `version=`, or benchmark.behaviour.HARNESS for the harness), which makes the
stored results it produced stale, then update this file. A refactor changes no golden.
"""
from __future__ import annotations

import hashlib
import json
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

# Short harness runs: every placement, Nesterov, dampening, clean and data-level attacks,
# a composition, local steps, a non-i.i.d. split, f_real, metrics off, no clipping.
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


def _inputs(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(n, D, generator=generator)
    rows[0] = rows[1]                      # a tie
    rows[-1] *= 25                         # an outlier
    return rows


def defense_golden(name: str) -> str:
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
            try:
                vector, selected = bound(_inputs(n, 100 + call))
                parts += [vector, selected if selected is not None else "-"]
            except PluginFailure as failure:
                parts.append(str(failure))
        return _digest(*parts)
    return _digest("no shape accepted")


def attack_golden(name: str) -> str:
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
    return _digest(*parts)


def task_goldens(name: str) -> dict[str, str]:
    """{"model": ..., "data": ...}; "data" only where the task's dataset is present."""
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
                              data.test_inputs[-16:], data.test_targets[-16:], loss)
    return goldens


def canary_config(name: str):
    return make_config(**{**CANARY_DEFAULTS, **CANARIES[name]})


def canary_golden(name: str) -> str | None:
    """The hash of a short run's metrics and evaluation rows; None if its data is absent."""
    config = canary_config(name)
    try:
        engine.load_task_data(config.task, None)
    except (UsageError, OSError):
        return None
    rows: list = []
    outcome = engine.run(config, rows.append, rows.append)
    return _digest(outcome.status, outcome.reason, rows)


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
                goldens[kind][name] = {"version": plugin.spec.version, "hash": compute_one(name)}
    for name, plugin in sorted(registry.discover("task").items()):
        if plugin.error is None:
            goldens["task"][name] = {"version": plugin.spec.version, **task_goldens(name)}
    for name in CANARIES:
        digest = canary_golden(name)
        if digest is not None:
            goldens["canary"][name] = {"versions": canary_versions(name), "hash": digest}
    return goldens


def load() -> dict:
    return json.loads(FILE.read_text())


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print(__doc__)
        return 2
    np.seterr(all="ignore")
    FILE.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
