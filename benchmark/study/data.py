"""Result folders as pandas frames: one row per run, or one row per (run, step).

Runs are grouped over seeds by GROUP_KEYS plus every other setting that varies in the
loaded set (e.g. `lr` when two learning rates were run), so runs of different settings
are never averaged together.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .. import store
from ..api import UsageError
from ..config import FIELDS, NOT_HASHED

GROUP_KEYS = ["task", "attack", "momentum_at", "f", "defense"]
FIGURE_KEYS = ["task", "attack", "momentum_at", "f"]
# settings that never change what is computed, or that runs are averaged over
NOT_A_SETTING = {"seed", "metrics", "device", "gradients"} | set(NOT_HASHED)
# the unattacked reference: the plain average of the n - f honest workers
REFERENCE = {"defense": "average", "attack": "none"}
FILTERS = ("task", "defense", "attack", "momentum_at", "f", "seed", "profile", "status")


def load(roots: Iterable[Path | str] | Path | str, **filters) -> pd.DataFrame:
    """Every complete run under `roots` (result roots or cell folders), one row each:
    the config fields, `status`, `reason`, `path` and the run.json summary as
    `summary_<key>`. `filters` keep runs whose field is among the given values, e.g.
    load("results", defense=["krum", "median"], f=[2])."""
    if isinstance(roots, (str, Path)):
        roots = [roots]
    frames = []
    for root in roots:
        if not Path(root).exists():
            raise UsageError(f"{root}: no such folder; give a results root such as results/")
        frames.append(store.load_runs(root))
    runs = pd.concat([frame for frame in frames if not frame.empty] or [pd.DataFrame()],
                     ignore_index=True)
    if runs.empty:
        raise UsageError(f"no complete result folder under {', '.join(map(str, roots))}; "
                         "run `python -m benchmark run --defense NAME` first")
    runs = runs.drop_duplicates("path").sort_values(["path"], ignore_index=True)
    loaded = runs
    for field, wanted in filters.items():
        if field not in FILTERS:
            raise UsageError(f"cannot filter on {field!r}; filters: {', '.join(FILTERS)}")
        if wanted:
            wanted = {str(value) for value in wanted}
            runs = runs[runs[field].astype(str).isin(wanted)]
    if runs.empty:
        raise UsageError(_no_match(loaded, filters, roots))
    return runs.reset_index(drop=True)


FILTER_WORDS = {"momentum_at": "momentum"}


def _values(values) -> str:
    return " or ".join(sorted(map(str, values), key=_natural))


def _natural(text: str):
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def _no_match(runs: pd.DataFrame, filters: dict, roots) -> str:
    """Why no loaded run passes the filters, in words: what was asked for and, for each
    filter asking for something absent, what the loaded runs have."""
    asked, absent = [], []
    for field, wanted in filters.items():
        if not wanted:
            continue
        word = FILTER_WORDS.get(field, field)
        asked.append(f"{word} {_values(set(map(str, wanted)))}")
        have = set(runs[field].astype(str)) if field in runs else set()
        if not have & set(map(str, wanted)):
            shown = sorted(have, key=_natural)
            more = f" (and {len(shown) - 12} more)" if len(shown) > 12 else ""
            absent.append(f"{word} {', '.join(shown[:12]) or 'none'}{more}")
    text = (f"no run matches {' and '.join(asked)} among {len(runs)} "
            f"run{'s' if len(runs) != 1 else ''} under "
            f"{', '.join(map(str, roots))}")
    if absent:
        text += f"; they have {'; '.join(absent)}"
    else:
        text += " (each filter matches some runs, but not together)"
    return text + "; loosen the filters"


def varying_settings(runs: pd.DataFrame) -> list[str]:
    """Settings other than GROUP_KEYS whose value differs between loaded runs."""
    candidates = [name for name in FIELDS
                  if name in runs and name not in GROUP_KEYS and name not in NOT_A_SETTING]
    return [name for name in candidates if runs[name].astype(str).nunique() > 1]


def group_keys(runs: pd.DataFrame) -> list[str]:
    """The columns that identify a group of seeds."""
    return GROUP_KEYS + varying_settings(runs)


def figure_keys(runs: pd.DataFrame, base: list[str] = FIGURE_KEYS) -> list[str]:
    return base + varying_settings(runs)


def _per_run(runs: pd.DataFrame, reader, columns: list[str] | None = None) -> pd.DataFrame:
    """The frames `reader` returns for each run's folder, stacked, with the run's group
    keys, n, seed and path repeated on each of its rows."""
    keys = list(dict.fromkeys(group_keys(runs) + ["n", "seed", "path"]))
    frames, positions = [], []
    for position, path in enumerate(runs["path"]):
        table = reader(Path(path))
        if table is None or table.empty:
            continue
        if columns is not None:
            table = table[[column for column in columns if column in table]]
        frames.append(table)
        positions.append(position)
    if not frames:
        return pd.DataFrame(columns=keys + (columns or []))
    values = pd.concat(frames, ignore_index=True)
    values = values.drop(columns=[key for key in keys if key in values])  # the run's wins
    rows = np.repeat(positions, [len(frame) for frame in frames])
    repeated = runs[keys].iloc[rows].reset_index(drop=True)
    return pd.concat([values, repeated], axis=1)


def _present(path: Path) -> bool:
    """The file exists and is not empty (a failed run may leave an empty metrics.csv)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _read_eval(folder: Path) -> pd.DataFrame | None:
    return store.load_eval(folder) if _present(folder / "eval.csv") else None


def eval_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, evaluation): group keys, n, seed, path, step, accuracy, loss."""
    return _per_run(runs, _read_eval)


def _read_steps(folder: Path) -> pd.DataFrame | None:
    """The full metrics.csv when present, else the committed compact trace."""
    if _present(folder / "metrics.csv"):
        return store.load_metrics(folder)
    if _present(folder / store.TRACE):
        return store.load_trace(folder)
    return None


def step_curves(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per (run, recorded step) with `columns` (those the run recorded)."""
    return _per_run(runs, _read_steps, ["step", *columns])


def slug(*parts) -> str:
    """A file-name-safe, deterministic name from values, e.g. ('little:factor=1', 2)."""
    return "_".join(re.sub(r"[^A-Za-z0-9.=+-]+", "-", str(part)).strip("-") for part in parts)


def setting_label(keys: list[str], values: tuple) -> str:
    """'task digits, attack little, ...' for titles."""
    return ", ".join(f"{key} {value}" for key, value in zip(keys, values))
