"""Study stored results: tables over seeds and plots (what `python -m benchmark study` runs).

In a notebook:

    from benchmark import study
    result = study.run("results", out="study", defense=["krum", "median"])
    result.tables["condition"]          # pandas frames: summary, condition, momentum
    result.figures                      # the PNG files written

or step by step (what the command does: the tables first, then the figures):

    result = study.analyse("results", attack=["little"])  # runs and tables, nothing written
    study.write_tables(result, "study")                   # summary.csv, condition.csv, ...
    study.draw(result, "study", jobs=4)                   # the PNG figures, 4 processes

or piece by piece:

    runs = study.load("results", attack=["little"])       # one row per run
    curves = study.eval_curves(runs)                      # one row per (run, evaluation)
    steps = study.step_curves(runs, ["honest_ratio"])     # one row per (run, step)
    table = study.per_run(runs, curves)                   # numbers per run
    study.tables.summary(table); study.tables.condition(table); study.tables.momentum(table)
    study.plots.accuracy_figures(curves, "study")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..summary import ACCURACY_TARGETS
from . import plots, tables
from .data import GROUP_KEYS, eval_curves, group_keys, load, slug, step_curves
from .tables import formatted, per_run

RATIO_COLUMNS = ["honest_ratio", "sampled_ratio", "bound_squared"]


@dataclass
class Study:
    runs: pd.DataFrame                     # one row per run (`load`)
    tables: dict[str, pd.DataFrame]        # summary, condition, momentum
    figures: list[Path] = field(default_factory=list)
    curves: pd.DataFrame | None = None     # one row per (run, evaluation): `eval_curves`
    per_run: pd.DataFrame | None = None    # the numbers per run the tables are made of


def analyse(roots: Iterable[Path | str] | Path | str, *,
            targets: tuple[float, ...] = ACCURACY_TARGETS, **filters) -> Study:
    """Loads runs (see `load` for `filters`) and builds the tables; writes nothing."""
    runs = load(roots, **filters)
    curves = eval_curves(runs)
    table = per_run(runs, curves, targets)
    return Study(runs, {"summary": tables.summary(table, targets),
                        "condition": tables.condition(table),
                        "momentum": tables.momentum(table)},
                 curves=curves, per_run=table)


def write_tables(result: Study, out: Path | str) -> list[Path]:
    """The tables as CSV files in `out`: summary.csv, condition.csv, momentum.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in result.tables.items():
        frame.to_csv(out / f"{name}.csv", index=False, float_format="%.6g")
        written.append(out / f"{name}.csv")
    return written


def drawings(result: Study) -> list[plots.Drawing]:
    """The figures of `result`, not drawn yet (their count: len(drawings(result)))."""
    steps = step_curves(result.runs, RATIO_COLUMNS)
    return (plots.accuracy_drawings(result.curves) + plots.ratio_drawings(steps)
            + plots.momentum_drawings(result.per_run))


def draw(result: Study, out: Path | str, jobs: int = 1,
         figures: list[plots.Drawing] | None = None) -> list[Path]:
    """Draws the figures (`figures`, default `drawings(result)`) into `out` in `jobs`
    processes; sets and returns `result.figures`."""
    result.figures = plots.render(drawings(result) if figures is None else figures, out, jobs)
    return result.figures


def run(roots: Iterable[Path | str] | Path | str, out: Path | str | None = None, *,
        targets: tuple[float, ...] = ACCURACY_TARGETS, plot: bool = True, jobs: int = 1,
        **filters) -> Study:
    """Loads runs (see `load` for `filters`), builds the tables and, if `out` is given,
    writes them there as CSV together with the figures (`plot=False`: tables only;
    `jobs`: processes drawing figures)."""
    result = analyse(roots, targets=targets, **filters)
    if out is None:
        return result
    write_tables(result, out)
    if plot:
        draw(result, out, jobs)
    return result


__all__ = ["GROUP_KEYS", "Study", "analyse", "draw", "drawings", "eval_curves", "formatted",
           "group_keys", "load", "per_run", "plots", "run", "slug", "step_curves", "tables",
           "write_tables"]
