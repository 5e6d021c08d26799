"""Checkpoints of a run in progress: atomic files, tied to their run, pruned.

A cell's checkpoints live beside its result folder, in `.ckpt-<cell folder name>/`, a name
that does not change from one process to the next (unlike the `.tmp-...-<pid>` folder the
run writes into), so a restarted run finds them:

    step-00000120.pt   torch.save of the run's state after step 120 (Simulation.state_dict),
                       the metrics and eval rows written so far, the seconds spent so far,
                       and what the run was: its config and behaviour versions

A file is written under a temporary name, flushed to disk (fsync) and renamed, so a file
with the final name is whole; once it is in place the older ones are deleted. The folder
goes when the cell is published; `keep=True` in benchmark.cells copies the last state into
the result folder as `checkpoint.pt` instead. Checkpoints hold pickled Python objects
(defense states, generator states): load only checkpoints this harness wrote.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import torch

from . import behaviour
from .config import NOT_HASHED, RunConfig

FORMAT = 2  # 2: tied to behaviour versions, not to code hashes
PREFIX = ".ckpt-"
KEPT_NAME = "checkpoint.pt"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointMismatch(Exception):
    """A checkpoint that cannot continue this run; the message says why."""


def folder_for(final: Path) -> Path:
    """Where the checkpoints of the cell published at `final` are written."""
    return final.parent / f"{PREFIX}{final.name}"


def files(folder: Path) -> list[Path]:
    """The checkpoint files in `folder`, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if (match := _STEP_FILE.match(path.name))]
    return [path for _, path in sorted(found)]


def latest(folder: Path) -> Path | None:
    found = files(folder)
    return found[-1] if found else None


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_atomic(path: Path, payload: dict) -> None:
    """torch.save to a temporary name beside `path`, fsync, rename over `path`."""
    temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    _fsync_folder(path.parent)


def save(folder: Path, payload: dict) -> Path:
    """Writes the checkpoint of step payload['step'] into `folder` and deletes the others."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{payload['step']:08d}.pt"
    write_atomic(path, payload)
    for old in files(folder):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _table(rows: list[dict]) -> bytes:
    """Rows as columns + value tuples (what the CSV logs wrote: the first row's keys),
    pickled apart: torch.save pickles each Python object through a slow hook, and a
    long run has hundreds of thousands of values."""
    columns = list(rows[0]) if rows else []
    values = [tuple(row[c] for c in columns) for row in rows]
    return pickle.dumps((columns, values), protocol=pickle.HIGHEST_PROTOCOL)


def _rows(table: bytes) -> list[dict]:
    columns, values = pickle.loads(table)
    return [dict(zip(columns, row)) for row in values]


def identity(config: RunConfig) -> dict:
    """The config fields a checkpoint must share with the run it continues."""
    return {key: value for key, value in config.to_dict().items() if key not in NOT_HASHED}


def payload(config: RunConfig, versions: dict, simulation, metric_rows: list[dict],
            eval_rows: list[dict], seconds: float) -> dict:
    return {"format": FORMAT, "config": identity(config), "versions": versions,
            "step": simulation.step_index, "simulation": simulation.state_dict(),
            "metrics": _table(metric_rows), "eval": _table(eval_rows), "seconds": seconds}


def mismatch(saved: dict, config: RunConfig, versions: dict) -> str | None:
    """Why the checkpoint `saved` cannot continue the run of `config` under the behaviour
    `versions` (benchmark.behaviour), or None."""
    if saved.get("format") != FORMAT:
        return f"it has format {saved.get('format')!r}, this harness reads format {FORMAT}"
    wanted = identity(config)
    differ = [f"{key}={saved['config'].get(key)!r} (this run: {value!r})"
              for key, value in wanted.items() if saved["config"].get(key) != value]
    differ += [f"{key}={value!r} (unknown to this run)" for key, value in saved["config"].items()
               if key not in wanted]
    if differ:
        return "it was written for another configuration: " + ", ".join(differ)
    changed = behaviour.differences(saved["versions"], versions)
    if changed:
        return f"the behaviour changed since it was written ({'; '.join(changed)})"
    if not 0 < saved["step"] <= config.steps:
        return f"it is at step {saved['step']}, outside this run's 1..{config.steps}"
    return None


def load(path: Path, config: RunConfig, versions: dict) -> dict:
    """The checkpoint at `path` with its rows as dicts; CheckpointMismatch if it does not
    belong to this run (other config or behaviour versions) or cannot be read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated by hand, or a class that no longer unpickles
        raise CheckpointMismatch(f"checkpoint {path} is unreadable "
                                 f"({type(error).__name__}: {error})") from error
    reason = mismatch(saved, config, versions) if isinstance(saved, dict) else "not a checkpoint"
    if reason:
        raise CheckpointMismatch(f"checkpoint {path} refused: {reason}")
    saved["metrics"], saved["eval"] = _rows(saved["metrics"]), _rows(saved["eval"])
    return saved
