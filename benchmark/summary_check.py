"""Whether the summary in a run.json is the one its own files give.

The seal (store.seal_problem) is an unkeyed hash: anyone can edit run.json and seal it
again. The summary is recomputed here from the sealed data files, with the harness's own
`summary.summarize`, and must match exactly (the CSV files hold every float as its repr,
so parsing gives back the very numbers the run summarised):
  - from eval.csv: the accuracy and loss fields, steps_to_*, the servers' accuracies;
  - from the per-step metrics: condition_share and condition_steps, and, where the full
    metrics.csv is at hand, the ratio medians and the bound. Without metrics.csv (it is
    not committed) the trace stands in when it holds every step; its 5 significant digits
    keep condition_held (0 or 1) exact, not the ratios.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

from . import store
from .summary import summarize

FROM_TRACE = ("condition_share", "condition_steps")
FROM_METRICS = (*FROM_TRACE, "honest_ratio_median", "sampled_ratio_median", "bound_squared")
NOT_FROM_FILES = ("max_server_drift", "final_server_drift", "max_server_drift_ratio",
                  "gathers")  # replicated servers' metrics: not in the trace's columns


def _number(text: str) -> float:
    return math.nan if text == "" else float(text)


def read_rows(text: str) -> list[dict]:
    """A CSV log's rows as dicts: `step` a whole number, every other column a float."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return []
    header = lines[0].split(",")
    step = header.index("step") if "step" in header else None
    rows = []
    for line in lines[1:]:
        values = line.split(",")
        row = dict(zip(header, map(_number, values)))
        if step is not None:
            row["step"] = int(values[step])
        rows.append(row)
    return rows


def _metric_rows(folder: Path, record: dict) -> tuple[list[dict] | None, tuple[str, ...]]:
    """(the per-step rows the summary came from, the summary fields they decide), or
    (None, ()) when the committed files cannot give them."""
    metrics = folder / "metrics.csv"
    if metrics.exists():
        return read_rows(metrics.read_text()), FROM_METRICS
    if store.TRACE not in record["files"]:  # a run with no metric row leaves no trace
        return [], FROM_METRICS
    rows = read_rows(gzip.decompress((folder / store.TRACE).read_bytes()).decode())
    steps = [row["step"] for row in rows]
    if steps and steps != list(range(steps[0], steps[0] + len(steps))):
        return None, ()  # a long run's trace keeps every k-th step only
    return rows, FROM_TRACE


def summary_problem(folder: Path, record: dict) -> str | None:
    """Which summary fields of run.json disagree with the cell's files, or None. Call it
    on a sealed folder (store.seal_problem returned None)."""
    evaluation_file = folder / "eval.csv"
    try:
        evaluations = read_rows(evaluation_file.read_text()) if evaluation_file.exists() else []
        metric_rows, decided = _metric_rows(folder, record)
        recomputed = summarize(metric_rows or [], evaluations, record["status"],
                               record.get("steps_done", 0))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as error:
        return (f"its files are not what the harness writes, so its summary cannot be "
                f"checked ({type(error).__name__}: {error})")
    checked = [key for key in recomputed if key not in FROM_METRICS + NOT_FROM_FILES
               or key in decided]
    stored = record["summary"]
    wrong = [key for key in checked if not _same(stored.get(key), recomputed[key])]
    if not wrong:
        return None
    shown = ", ".join(f"{key} {stored.get(key)!r} (files: {recomputed[key]!r})"
                      for key in wrong[:3])
    return f"run.json's summary disagrees with its files: {shown}"


def _same(stored, recomputed) -> bool:
    both_nan = isinstance(stored, float) and isinstance(recomputed, float) and (
        math.isnan(stored) and math.isnan(recomputed))
    return stored == recomputed or both_nan
