"""The site's seaborn plots, one set per setting: a defense × attack heatmap of mean
accuracy (its colours fitted to the values shown), accuracy curves with seed bands, and
the honest deviation/norm ratio against each rule's bound. (benchmark/study.py has
plotting helpers for ad-hoc studies; these are the leaderboard's own, read from the
committed files only: eval.csv and the trace.)

Figures are saved without metadata, so the same results give the same PNG bytes.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from benchmark import store  # noqa: E402

from .collect import Result  # noqa: E402
from .scores import CLEAN, Table, run_accuracy  # noqa: E402

DPI = 72
COLUMNS = 4      # facets per row
LEGEND_ROWS = 8  # legend entries per column
LOW_PERCENTILE = 5   # the heatmap's colours start at this percentile of its values
MIN_SPAN = 0.02      # ... and span at least this much accuracy


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    plt.close(figure)


def _palette(defenses: list[str]) -> dict[str, tuple]:
    return dict(zip(defenses, sns.color_palette("tab10" if len(defenses) <= 10 else "tab20",
                                                len(defenses))))


def colour_range(values: np.ndarray) -> tuple[float, float]:
    """The heatmap's colour scale, fitted to the shown values so that 0.90 and 0.97 get
    different colours: from the 5th percentile (a few collapsed runs do not stretch it) to
    the maximum, at least MIN_SPAN wide and within [0, 1]."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(np.percentile(finite, LOW_PERCENTILE)), float(finite.max())
    low = max(min(low, high - MIN_SPAN), 0.0)
    return low, max(high, low + MIN_SPAN)


def heatmap(table: Table, results: list[Result], path: Path) -> None:
    frame = pd.DataFrame([{"defense": r.record["config"]["defense"], "attack": r.label["attack"],
                           "accuracy": run_accuracy(r)} for r in results])
    grid = frame.pivot_table(index="defense", columns="attack", values="accuracy",
                             aggfunc="mean")
    order = ([CLEAN] if CLEAN in grid.columns else []) + table.attacks
    grid = grid.reindex(index=[row.defense for row in table.rows], columns=order)
    low, high = colour_range(grid.to_numpy())
    below = bool((grid.to_numpy() < low).any())
    figure, axes = plt.subplots(figsize=(1.0 + 0.75 * len(order), 1.2 + 0.4 * len(grid)))
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=low, vmax=high, cmap="viridis", ax=axes,
                cbar_kws={"label": f"run accuracy (mean over seeds)\ncolour scale "
                                   f"{low:.2f}–{high:.2f}, fitted to the values shown",
                          "extend": "min" if below else "neither"})
    axes.set_title(table.title(), fontsize=9)
    axes.set_xlabel("attack")
    _save(figure, path)


def _facets(frame: pd.DataFrame, column: str, hue: str, y: str, palette, errorbar):
    columns = sorted(frame[column].unique())
    grid = sns.relplot(data=frame, kind="line", x="step", y=y, hue=hue, col=column,
                       col_order=columns, col_wrap=min(COLUMNS, len(columns)),
                       hue_order=sorted(palette), palette=palette, errorbar=errorbar,
                       height=2.4, aspect=1.25, facet_kws={"sharey": True})
    grid.set_titles("{col_name}")
    sns.move_legend(grid, "center left", bbox_to_anchor=(1.0, 0.5),
                    ncol=math.ceil(len(palette) / LEGEND_ROWS), frameon=False)
    return grid


def curves(table: Table, results: list[Result], path: Path) -> None:
    frames = []
    for result in results:
        frame = store.load_eval(result.folder)[["step", "accuracy"]]
        frames.append(frame.assign(defense=result.record["config"]["defense"],
                                   attack=result.label["attack"], seed=result.label["seed"]))
    frame = pd.concat(frames, ignore_index=True)
    palette = _palette(sorted(frame["defense"].unique()))
    grid = _facets(frame, "attack", "defense", "accuracy", palette, ("sd", 1))
    grid.set(ylim=(0, 1))
    grid.figure.suptitle(f"test accuracy, mean ± sd over seeds — {table.title()}",
                         y=1.02, fontsize=9)
    _save(grid.figure, path)


def ratio(table: Table, results: list[Result], path: Path) -> bool:
    """Honest deviation / norm per step, against the rule's bound (dashed); False (and no
    file) if no rule of this setting states a bound."""
    frames, bounds = [], {}
    for result in results:
        if not (result.folder / store.TRACE).exists():
            continue  # a run that failed before its first step has no trace
        trace = store.load_trace(result.folder)
        if "bound_squared" not in trace or trace["bound_squared"].isna().all():
            continue
        defense = result.record["config"]["defense"]
        bounds[defense] = float(np.sqrt(trace["bound_squared"].dropna().iloc[0]))
        frames.append(pd.DataFrame({"step": trace["step"], "ratio": np.sqrt(trace["honest_ratio"]),
                                    "defense": defense, "attack": result.label["attack"]}))
    if not frames:
        return False
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[np.isfinite(frame["ratio"]) & (frame["ratio"] > 0)]
    if frame.empty:
        return False
    palette = _palette(sorted(frame["attack"].unique()))
    grid = _facets(frame, "defense", "attack", "ratio", palette, None)
    grid.set(yscale="log")
    for defense, axes in grid.axes_dict.items():
        axes.axhline(bounds[defense], color="black", linestyle="--", linewidth=1)
    grid.set_axis_labels("step", "honest deviation / norm")
    grid.figure.suptitle(f"variance-norm ratio vs the rule's bound (dashed), mean over seeds — "
                         f"{table.title()}", y=1.02, fontsize=9)
    _save(grid.figure, path)
    return True
