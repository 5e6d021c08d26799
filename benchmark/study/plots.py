"""Seaborn figures written as PNG files with deterministic names.

Figures are built on matplotlib's Agg canvas directly (no pyplot state, no GUI), so
they work headless and leave a notebook's own backend alone. `*_drawings` lists the
figures to draw (one `Drawing` each: its data, a draw function, a file name); `render`
draws them, in several processes if asked, and returns the paths written, sorted
(`*_figures` does both). Names are made of the figure's group values only:

    accuracy_<task>_<attack>_<placement>_f<f>[_<setting>=<value>...].png
    ratio_<task>_<attack>_f<f>[...].png
    momentum_<task>_f<f>[...].png
"""
from __future__ import annotations

import itertools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .data import REFERENCE, figure_keys, slug, varying_settings

PLACEMENT_ORDER = ["update", "worker", "server"]
STEP_LABEL = "training step (updates applied)"
METRICS_STEP_LABEL = "training step (index, from 0)"
MOMENTUM = "momentum at"
DPI = 110


def _figure(columns: int, width: float, height: float, sharey: bool = False):
    figure = Figure(figsize=(width * columns, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns, squeeze=False, sharey=sharey)[0]
    return figure, list(axes)


def _save(figure: Figure, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    figure.savefig(path, dpi=DPI, metadata={"Software": None})  # same data, same bytes
    return path


def _palette(values) -> dict:
    names = sorted(set(map(str, values)))
    return dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl",
                                             len(names))))


def _placements(values) -> list[str]:
    present = set(values)
    return [p for p in PLACEMENT_ORDER if p in present] + sorted(present - set(PLACEMENT_ORDER))


def _title(keys: list[str], values: tuple, n_values) -> str:
    def part(key, value):
        return {"task": str(value), "f": f"f = {value}", "attack": f"attack {value}",
                "momentum_at": f"momentum at {value}"}.get(key, f"{key} = {value}")
    n_text = ", ".join(str(n) for n in sorted(set(n_values)))
    return " · ".join([*(part(k, v) for k, v in zip(keys, values)), f"n = {n_text}"])


def _figure_legend(figure: Figure, axes, title: str) -> None:
    """One legend for the whole figure, outside the panels (labels deduplicated)."""
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    figure.legend(list(entries.values()), list(entries), title=title, loc="outside right center",
                  fontsize="small")


def _labels(axis, xlabel: str, ylabel: str, y_visible: bool = True) -> None:
    """Axis labels set before seaborn draws: seaborn labels an unlabelled axis itself and,
    to do so, lays out its tick labels (text measurement), a large share of a figure's time.
    `y_visible=False` hides the label of an inner panel sharing the first panel's y axis."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel, visible=y_visible)


def _mean_sd_lines(axis, data: pd.DataFrame, x: str, y: str, hue: str, hue_order: list,
                   palette: dict, style: str | None = None, style_order: list | None = None,
                   log: bool = False, legend: bool | str = "auto") -> None:
    """What `sns.lineplot(..., errorbar="sd")` draws: per (hue, style) level, the mean over
    the rows sharing an x as a line and mean ± std (sample std) as a band (none where a
    single row has that x), in log10 space if `log`. The means and stds come from one
    vectorised groupby: seaborn aggregates each x in a Python call (about 1 ms per point
    of every line), which made a figure of long curves take minutes."""
    keys = [hue] + ([style] if style else []) + [x]
    values = data[y].to_numpy(dtype=float)
    frame = data[keys].assign(value=np.log10(values) if log else values).dropna()
    stats = frame.groupby(keys, sort=True, observed=True)["value"].agg(["mean", "std"])
    stats = stats.reset_index()
    if log:
        low, high = 10 ** (stats["mean"] - stats["std"]), 10 ** (stats["mean"] + stats["std"])
        stats["mean"] = 10 ** stats["mean"]
    else:
        low, high = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    stats["low"], stats["high"] = low, high
    sns.lineplot(data=stats, x=x, y="mean", hue=hue, hue_order=hue_order, palette=palette,
                 style=style, style_order=style_order, estimator=None, ax=axis, legend=legend)
    # the bands, in seaborn's order (hue levels, then style levels): translucent bands
    # overlap, so their order shows
    for level in hue_order:
        for style_level in (style_order if style else [None]):
            mask = stats[hue] == level
            if style:
                mask &= stats[style] == style_level
            band = stats[mask]
            if band.empty or band["low"].isna().all():
                continue
            axis.fill_between(band[x], band["low"], band["high"], color=palette[level],
                              alpha=0.2)


def _groups(frame: pd.DataFrame, keys: list[str]):
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        yield (values if isinstance(values, tuple) else (values,)), group


@dataclass(frozen=True)
class Drawing:
    """One figure to draw: `draw(**data)` returns it, saved as `<name>.png`. `panels`
    estimates its cost, to start the longest first when drawing in parallel."""
    name: str
    draw: Callable[..., Figure]
    data: dict
    panels: int


def render(drawings: list[Drawing], out: Path | str, jobs: int = 1) -> list[Path]:
    """Draws and saves `drawings` into `out`, in `jobs` processes (each figure is drawn
    on its own, so the files are the same bytes whatever `jobs`); returns the sorted paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = min(jobs, len(drawings))
    if jobs <= 1:
        return sorted(_draw_and_save(drawing, out) for drawing in drawings)
    ordered = sorted(drawings, key=lambda drawing: (-drawing.panels, drawing.name))
    with ProcessPoolExecutor(jobs) as pool:
        return sorted(pool.map(_draw_and_save, ordered, itertools.repeat(out)))


def _draw_and_save(drawing: Drawing, out: Path) -> Path:
    return _save(drawing.draw(**drawing.data), out, drawing.name)


def accuracy_drawings(curves: pd.DataFrame) -> list[Drawing]:
    """Test accuracy and loss vs step, mean ± std band over seeds, one line per defense;
    one figure per (task, attack, placement, f, varying settings)."""
    if curves.empty:
        return []
    keys = figure_keys(curves)
    palette = _palette(curves["defense"])
    curves = curves.assign(accuracy_percent=100 * curves["accuracy"])
    columns = ["defense", "step", "accuracy_percent", "loss", "n"]
    return [Drawing(slug("accuracy", *_file_parts(keys, values)), _draw_accuracy,
                    {"group": group[columns], "title": _title(keys, values, group["n"]),
                     "palette": palette}, 2)
            for values, group in _groups(curves, keys)]


def _draw_accuracy(group: pd.DataFrame, title: str, palette: dict) -> Figure:
    figure, (accuracy_axis, loss_axis) = _figure(2, 6.0, 4.2)
    order = sorted(group["defense"].unique())
    for axis, column, label in ((accuracy_axis, "accuracy_percent", "test accuracy (%)"),
                                (loss_axis, "loss", "test loss (mean per test sample)")):
        _labels(axis, STEP_LABEL, label)
        _mean_sd_lines(axis, group, "step", column, "defense", order, palette,
                       legend=axis is accuracy_axis)
        axis.grid(alpha=0.3)
    accuracy_axis.set_ylim(0, 100)
    _figure_legend(figure, [accuracy_axis], "defense\n(mean ± std\nover seeds)")
    figure.suptitle(title)
    return figure


def accuracy_figures(curves: pd.DataFrame, out: Path | str, jobs: int = 1) -> list[Path]:
    """Draws `accuracy_drawings(curves)` into `out`."""
    return render(accuracy_drawings(curves), out, jobs)


def _file_parts(keys: list[str], values: tuple) -> list[str]:
    parts = []
    for key, value in zip(keys, values):
        if key == "f":
            parts.append(f"f{value}")
        elif key in ("task", "attack", "momentum_at"):
            parts.append(str(value))
        else:
            parts.append(f"{key}={value}")
    return parts


def ratio_drawings(steps: pd.DataFrame) -> list[Drawing]:
    """Honest and sampled (deviation / norm)² vs step on a log scale, one panel per
    defense with the rule's bound² as a horizontal line, one colour per momentum
    placement; one figure per (task, attack, f, varying settings)."""
    needed = {"honest_ratio", "sampled_ratio"}
    if steps.empty or not needed & set(steps.columns):
        return []
    present = [column for column in ("honest_ratio", "sampled_ratio") if column in steps]
    keys = figure_keys(steps, ["task", "attack", "f"])
    long = steps.melt(id_vars=[c for c in steps.columns if c not in present],
                      value_vars=present, var_name="vectors", value_name="ratio")
    long["vectors"] = long["vectors"].str.replace("_ratio", "", regex=False)
    long = long[long["ratio"] > 0]  # log scale; NaN (undefined) and 0 cannot be drawn
    long = long.rename(columns={"momentum_at": MOMENTUM})
    columns = ["defense", "step", "ratio", MOMENTUM, "vectors", "n"] + (
        ["bound_squared"] if "bound_squared" in long else [])
    return [Drawing(slug("ratio", *_file_parts(keys, values)), _draw_ratio,
                    {"group": group[columns], "title": _title(keys, values, group["n"])},
                    group["defense"].nunique())
            for values, group in _groups(long, keys)]


def _draw_ratio(group: pd.DataFrame, title: str) -> Figure:
    placement_palette = dict(zip(PLACEMENT_ORDER, sns.color_palette("colorblind", 3)))
    defenses = sorted(group["defense"].unique())
    figure, axes = _figure(len(defenses), 5.0, 4.2, sharey=True)
    for axis, defense in zip(axes, defenses):
        data = group[group["defense"] == defense]
        axis.set_yscale("log")  # before plotting: bands are computed in log space
        _labels(axis, METRICS_STEP_LABEL, "(deviation / norm)²  (dimensionless)",
                y_visible=axis is axes[0])
        _mean_sd_lines(axis, data, "step", "ratio", MOMENTUM, _placements(data[MOMENTUM]),
                       placement_palette, style="vectors", style_order=["honest", "sampled"],
                       log=True)
        bound = _bound_squared(data)
        if bound is not None:
            axis.axhline(bound, color="black", linestyle=":", linewidth=1.5,
                         label="the rule's bound²")
            low, high = axis.get_ylim()
            axis.set_ylim(min(low, bound / 3), max(high, bound * 3))
        axis.set_title(f"{defense}: bound² = {bound:.3g}" if bound is not None
                       else f"{defense} (no known bound)")
        axis.grid(alpha=0.3, which="both")
    _figure_legend(figure, axes, "mean ± std\nover seeds")
    figure.suptitle(title + "\nvariance-norm ratio; the condition holds below the bound")
    return figure


def ratio_figures(steps: pd.DataFrame, out: Path | str, jobs: int = 1) -> list[Path]:
    """Draws `ratio_drawings(steps)` into `out`."""
    return render(ratio_drawings(steps), out, jobs)


def _bound_squared(data: pd.DataFrame) -> float | None:
    """The rule's bound² in one panel's rows (one figure's group, one defense)."""
    if "bound_squared" not in data:
        return None
    bounds = data["bound_squared"].dropna()
    return float(bounds.iloc[0]) if len(bounds) and math.isfinite(bounds.iloc[0]) else None


def momentum_drawings(table: pd.DataFrame) -> list[Drawing]:
    """Maximum test accuracy per defense, momentum at update vs worker (vs server) side
    by side (one dot per seed, mean ± std), one panel per attack, with the unattacked
    reference (average, attack none) as dashed lines; one figure per (task, f, settings)."""
    table = table.dropna(subset=["max_accuracy"])
    if table.empty:
        return []
    keys = ["task", "f", *varying_settings(table)]
    table = table.assign(max_accuracy_percent=100 * table["max_accuracy"]).rename(
        columns={"momentum_at": MOMENTUM})
    columns = ["attack", "defense", MOMENTUM, "max_accuracy_percent", "n"]
    return [Drawing(slug("momentum", *_file_parts(keys, values)), _draw_momentum,
                    {"group": group[columns], "title": _title(keys, values, group["n"])},
                    group["attack"].nunique())
            for values, group in _groups(table, keys)]


def _draw_momentum(group: pd.DataFrame, title: str) -> Figure:
    attacks = sorted(group["attack"].unique(), key=lambda a: (a != "none", a))
    placements = _placements(group[MOMENTUM])
    palette = dict(zip(placements, sns.color_palette("colorblind", len(placements))))
    defenses = sorted(group["defense"].unique())
    reference = group[(group["defense"] == REFERENCE["defense"])
                      & (group["attack"] == REFERENCE["attack"])]
    figure, axes = _figure(len(attacks), max(4.5, 0.9 * len(defenses) + 1.5), 4.5,
                           sharey=True)
    # seaborn divides the dodge by (placements - 1): with a single placement, no dodge
    dodge = len(placements) > 1
    for axis, attack in zip(axes, attacks):
        data = group[group["attack"] == attack]
        _labels(axis, "defense", "max test accuracy (%)", y_visible=axis is axes[0])
        sns.stripplot(data=data, x="defense", y="max_accuracy_percent", hue=MOMENTUM,
                      order=defenses, hue_order=placements, palette=palette, dodge=dodge,
                      alpha=0.45, size=4, jitter=False, legend=False, ax=axis)
        sns.pointplot(data=data, x="defense", y="max_accuracy_percent", hue=MOMENTUM,
                      order=defenses, hue_order=placements, palette=palette,
                      dodge=0.4 if dodge else False, errorbar="sd", markers="D",
                      linestyles="none", ax=axis)
        for placement in placements:
            level = reference.loc[reference[MOMENTUM] == placement, "max_accuracy_percent"]
            if len(level):
                axis.axhline(level.mean(), color=palette[placement], linestyle="--",
                             linewidth=1, label=f"average, no attack ({placement})")
        axis.set(title=f"attack {attack}", ylim=(0, 100))
        if max(map(len, defenses)) > 8:
            axis.tick_params(axis="x", rotation=30)
        axis.grid(alpha=0.3, axis="y")
    _figure_legend(figure, axes, "momentum at\n(mean ± std,\ndots: seeds)")
    figure.suptitle(title + "\nmax test accuracy by momentum placement")
    return figure


def momentum_figures(table: pd.DataFrame, out: Path | str, jobs: int = 1) -> list[Path]:
    """Draws `momentum_drawings(table)` into `out`."""
    return render(momentum_drawings(table), out, jobs)
