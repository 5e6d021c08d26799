"""The reproduction's figures, in the paper's layout: for each (dataset, f, learning-rate
variant, Nesterov) one PNG whose panels are the (rule, attack) pairs, each with the test
accuracy over steps at momentum update and at momentum worker and the unattacked baseline,
mean ± sd over the seeds present. Read from the committed eval.csv files only.

Saved without metadata (leaderboard.plots._save): the same results and package versions
give the same bytes; another matplotlib version may draw other bytes, so `reproduce
--check` compares the Markdown, which names every figure.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark import store

from .collect import Result
from .plots import _facets, _save
from .reproduction import _setting

BASELINE = "baseline (no attack)"
SERIES = {"update": (0.12, 0.47, 0.71), "worker": (1.0, 0.5, 0.05),
          BASELINE: (0.45, 0.45, 0.45)}


def setting_title(setting: tuple) -> str:
    task, f, variant, nesterov = setting
    return f"{task}, f = {f}, {variant or 'default'}, Nesterov {'on' if nesterov else 'off'}"


def file_name(setting: tuple) -> str:
    """e.g. mnist-f24-lr0.5-nesterov-off.png"""
    task, f, variant, nesterov = setting
    variant = re.sub(r"[^a-z0-9.]+", "", str(variant).lower()) or "default"
    return f"{task}-f{f}-{variant}-nesterov-{'on' if nesterov else 'off'}.png"


def _frame(results: list[Result]) -> pd.DataFrame:
    frames = []
    for result in results:
        frame = store.load_eval(result.folder)[["step", "accuracy"]]
        series = BASELINE if result.is_baseline else result.label["momentum_at"]
        panel = "" if result.is_baseline else f"{result.label['defense']} · {result.label['attack']}"
        frames.append(frame.assign(series=series, panel=panel, seed=result.label["seed"],
                                   setting=file_name(_setting(result.label))))
    return pd.concat(frames, ignore_index=True)


def plan(results: list[Result]) -> list[tuple[str, str]]:
    """(title, file name) of each figure `write` draws: one per setting with an attacked
    run, in the order of the settings."""
    settings = {_setting(r.label) for r in results if not r.is_baseline}
    return [(setting_title(s), file_name(s))
            for s in sorted(settings, key=lambda s: tuple(map(str, s)))]


def write(results: list[Result], folder: Path) -> list[tuple[str, str]]:
    """Draws the figures of `plan` into `folder` (whose older PNGs are removed first)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    planned = plan(results)
    if not planned:
        return []
    frame = _frame(sorted(results, key=lambda r: r.folder.as_posix()))
    for title, name in planned:
        rows = frame[frame["setting"] == name]
        panels = sorted(p for p in rows["panel"].unique() if p)
        baseline = rows[rows["series"] == BASELINE]
        attacked = rows[rows["series"] != BASELINE]
        shown = pd.concat([attacked] + [baseline.assign(panel=panel) for panel in panels],
                          ignore_index=True).drop(columns="setting")
        palette = {series: SERIES[series] for series in sorted(set(shown["series"]))}
        grid = _facets(shown, "panel", "series", "accuracy", palette, ("sd", 1))
        grid.set(ylim=(0, 1))
        grid.figure.suptitle(f"test accuracy, mean ± sd over seeds — {title}", y=1.02,
                             fontsize=9)
        _save(grid.figure, folder / name)
    return planned
