"""Tables over seeds: numeric pandas frames, and `formatted` for printing.

A statistic summarised over seeds appears as two columns, `<name>_mean` and
`<name>_std` (sample std, NaN for a single seed); `formatted` joins them as "m ± s".
Accuracies and condition shares are fractions in the frames, percentages when printed.
"""
from __future__ import annotations

import math

import pandas as pd

from ..summary import ACCURACY_TARGETS
from .data import GROUP_KEYS, REFERENCE, group_keys, varying_settings

PERCENT = ("accuracy", "condition_share")


def _summary_column(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"summary_{key}"
    return pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(
        float("nan"), index=runs.index)


def per_run(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
            targets: tuple[float, ...] = ACCURACY_TARGETS) -> pd.DataFrame:
    """One row per run: group keys, seed, status and the numbers tables are made of.
    `steps_to_<a>` comes from the evaluation curves when given (any target), else from
    run.json (the targets it stores)."""
    table = runs[list(dict.fromkeys(group_keys(runs) + ["n", "seed", "status", "path"]))].copy()
    for key in ("final_accuracy", "max_accuracy", "condition_share", "honest_ratio_median",
                "bound_squared"):
        table[key] = _summary_column(runs, key)
    ordered = None
    if curves is not None:  # no evaluation at all: no step and accuracy columns
        ordered = (curves.sort_values(["path", "step"]) if {"step", "accuracy"} <= set(curves)
                   else pd.DataFrame({"path": [], "step": [], "accuracy": []}))
    for target in targets:
        name = f"steps_to_{target:g}"
        if ordered is not None:
            # summary.steps_to_reach, for every run at once: the first evaluated step at
            # or above the target
            reached = ordered[ordered["accuracy"] >= target].groupby("path")["step"].first()
            table[name] = pd.to_numeric(table["path"].map(reached), errors="coerce")
        else:
            table[name] = _summary_column(runs, name)
    return table


def _mean_std(grouped, columns: list[str]) -> pd.DataFrame:
    stats = grouped[columns].agg(["mean", "std"])
    stats.columns = [f"{column}_{stat}" for column, stat in stats.columns]
    return stats


def summary(table: pd.DataFrame, targets: tuple[float, ...] = ACCURACY_TARGETS) -> pd.DataFrame:
    """One row per group of seeds: counts by status, accuracies, condition share, the
    median honest ratio, the bound², and steps to reach each target (mean over the seeds
    that reached it, with how many did)."""
    keys = [key for key in table.columns if key in group_keys(table)]
    grouped = table.groupby(keys, dropna=False, sort=True)
    result = grouped.size().rename("seeds").to_frame()
    for status in ("ok", "diverged", "failed"):
        result[status] = grouped["status"].apply(lambda s, status=status: int((s == status).sum()))
    result = result.join(_mean_std(grouped, ["final_accuracy", "max_accuracy",
                                             "condition_share"]))
    result["honest_ratio_median"] = grouped["honest_ratio_median"].median()
    result["bound_squared"] = grouped["bound_squared"].first()
    for target in targets:
        name = f"steps_to_{target:g}"
        result[name] = grouped[name].mean()
        result[f"{name}_reached"] = grouped[name].count()
    return result.reset_index()


def condition(table: pd.DataFrame) -> pd.DataFrame:
    """Share of steps where the variance-norm condition held, one row per (task, f,
    settings, defense, attack), one mean and std column pair per momentum placement."""
    wide = _by_placement(table, "condition_share")
    values = [column for column in wide.columns if column.startswith("condition_share_")]
    return wide.dropna(how="all", subset=values).reset_index(drop=True)  # rules with no bound


def _by_placement(table: pd.DataFrame, value: str) -> pd.DataFrame:
    keys = [key for key in group_keys(table) if key != "momentum_at"]
    order = ["task", "f", *varying_settings(table), "defense", "attack"]
    stats = table.groupby(keys + ["momentum_at"], dropna=False)[value].agg(["mean", "std"])
    wide = stats.unstack("momentum_at")
    wide.columns = [f"{value}_{placement}_{stat}" for stat, placement in wide.columns]
    wide = wide[sorted(wide.columns, key=_placement_order)]
    return wide.reset_index()[order + list(wide.columns)].sort_values(order, ignore_index=True)


def _placement_order(column: str) -> tuple:
    for index, placement in enumerate(("update", "worker", "server")):
        if f"_{placement}_" in column:
            return index, column
    return 9, column


def momentum(table: pd.DataFrame) -> pd.DataFrame:
    """Maximum test accuracy by momentum placement for each defense and attack, the gain
    of worker over update momentum, and the unattacked reference (average, attack none)
    of the same task, f, settings and placement."""
    wide = _by_placement(table, "max_accuracy")
    if {"max_accuracy_update_mean", "max_accuracy_worker_mean"} <= set(wide.columns):
        wide["worker_gain"] = wide["max_accuracy_worker_mean"] - wide["max_accuracy_update_mean"]
    reference = table[(table["defense"] == REFERENCE["defense"])
                      & (table["attack"] == REFERENCE["attack"])]
    context = ["task", "f", *varying_settings(table)]
    if not reference.empty:
        means = reference.groupby(context + ["momentum_at"], dropna=False)["max_accuracy"].mean()
        means = means.unstack("momentum_at")
        means.columns = [f"reference_{placement}" for placement in means.columns]
        wide = wide.merge(means.reset_index(), on=context, how="left")
    return wide


HEADERS = {"momentum_at": "momentum", "final_accuracy": "final acc %",
           "max_accuracy": "max acc %", "condition_share": "condition held %",
           "honest_ratio_median": "honest ratio (median)", "bound_squared": "bound²",
           "worker_gain": "worker gain %"}


def _header(name: str) -> str:
    if name in HEADERS:
        return HEADERS[name]
    if name.startswith("steps_to_"):
        return f"steps to {100 * float(name[9:]):g}% (seeds)"
    for prefix in ("condition_share_", "max_accuracy_", "reference_"):
        if name.startswith(prefix):
            return f"{HEADERS.get(prefix[:-1], 'reference %')} {name[len(prefix):]}"
    return name


def formatted(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) for tabulate: mean/std pairs joined as "m ± s", fractions as
    percentages, steps to reach an accuracy as "mean (seeds that reached it)"."""
    headers, getters = [], []
    columns = list(frame.columns)
    for column in columns:
        if (column.endswith("_std") and column[:-4] + "_mean" in columns
                or column.endswith("_reached")):
            continue
        if column.endswith("_mean") and column[:-5] + "_std" in columns:
            stem = column[:-5]
            headers.append(_header(stem))
            getters.append(lambda row, stem=stem: _pair(row[stem + "_mean"], row[stem + "_std"],
                                                        _is_percent(stem)))
        elif column + "_reached" in columns:
            headers.append(_header(column))
            getters.append(lambda row, column=column: _reached(row[column],
                                                               row[column + "_reached"]))
        else:
            headers.append(_header(column))
            getters.append(lambda row, column=column: _cell(row[column], column))
    rows = [[get(row) for get in getters] for _, row in frame.iterrows()]
    return headers, rows


def _reached(mean: float, count: int) -> str:
    return "never" if not count else f"{mean:.0f} ({count})"


def _is_percent(name: str) -> bool:
    return any(word in name for word in PERCENT) or name.startswith(("reference_", "worker_gain"))


def _cell(value, column: str) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if _is_percent(column):
            return f"{100 * value:.1f}"
        if "ratio" in column or "bound" in column:
            return f"{value:.3g}"
        return f"{value:g}"
    return str(value)


def _pair(mean: float, std: float, percent: bool) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return ""
    scale = 100 if percent else 1
    text = f"{scale * mean:.1f}" if percent else f"{mean:.3g}"
    if isinstance(std, float) and not math.isnan(std):
        text += f" ± {scale * std:.1f}" if percent else f" ± {std:.2g}"
    return text


__all__ = ["GROUP_KEYS", "condition", "formatted", "momentum", "per_run", "summary"]
