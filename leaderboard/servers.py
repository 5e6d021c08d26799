"""The board's servers section: ByzSGD's replicated parameter servers on the laptop task
(the `servers` profile), not ranked: how each gradient rule holds as the Byzantine servers
(f_ps) and the gather period (T) grow.

Per (defense, f_ps, server attack) and T: the run accuracy (scores.run_accuracy, whose
eval.csv accuracy is the median over the correct servers' models) as mean ± the 95 %
t-interval over seeds; at the largest T, the worst correct server's run accuracy and the
largest drift among correct servers (‖θ_i − θ_j‖ over the mean model's norm), means over
seeds. Only complete groups (every seed) are shown, as on the rest of the board.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from benchmark import matrix

from . import collect, scores
from .grids import Cell, Grid, defense_cell, mean_cell, stat_cell
from .statistics import Stat

PROFILE = "servers"  # in leaderboard.SECTIONS


def _worst_server_accuracy(result: collect.Result) -> float:
    """The run accuracy (same window) of the worst correct server at each evaluation."""
    if result.record["status"] != "ok":
        return 0.0
    lines = (result.folder / "eval.csv").read_text().split("\n")
    header = lines[0].split(",")
    step, worst = header.index("step"), header.index("worst_accuracy")
    rows = [line.split(",") for line in lines[1:] if line]
    steps = result.record["config"]["steps"]
    start = steps - math.ceil(steps * scores.LAST_SHARE)
    window = [float(row[worst]) for row in rows if int(row[step]) >= start] \
        or [float(rows[-1][worst])]
    return math.fsum(window) / len(window)


def _scenario(config: dict) -> tuple[int, str]:
    return config["byzantine_servers"], config["server_attack"]


def section(results: Path | str) -> Grid | None:
    """The servers grid from RESULTS/servers/, or None when it holds no complete group."""
    if not (Path(results) / PROFILE).is_dir():
        return None
    profile = matrix.load_profile(PROFILE)
    collection = collect.collect(results, profile)
    accuracy: dict[tuple, list[float]] = defaultdict(list)
    worst: dict[tuple, list[float]] = defaultdict(list)
    drift: dict[tuple, list[float]] = defaultdict(list)
    for result in sorted(collection.results, key=lambda r: r.label["seed"]):
        config = result.record["config"]
        key = (config["defense"], *_scenario(config), config["gather_every"])
        accuracy[key].append(scores.run_accuracy(result))
        worst[key].append(_worst_server_accuracy(result))
        drift[key].append(result.record["summary"].get("max_server_drift_ratio", math.nan))
    if not accuracy:
        return None
    periods = sorted(profile.grid["gather_every"])
    longest = periods[-1]
    scenarios = [(v["byzantine_servers"], v["server_attack"])
                 for v in profile.task[profile.tasks[0]]["variants"]]
    defenses = matrix.profile_defenses(profile)
    rows = []
    for defense in defenses:
        for f_ps, attack in scenarios:
            keys = [(defense, f_ps, attack, period) for period in periods]
            if not any(key in accuracy for key in keys):
                continue
            last = (defense, f_ps, attack, longest)
            rows.append([defense_cell(defense), Cell(str(f_ps), f_ps), Cell(attack, attack),
                         *(stat_cell(Stat.of(accuracy[key]) if key in accuracy else None)
                           for key in keys),
                         mean_cell(Stat.of(worst[last]) if last in worst else None),
                         _drift_cell(drift.get(last))])
    present = len(collection.results)
    expected = sum(counts[1] for counts in collection.coverage.values())
    excluded = sum(exclusion.count for exclusion in collection.exclusions)
    task = profile.tasks[0]
    first = collection.results[0].record["config"]
    notes = [
        f"Profile `{PROFILE}` on {task}: {profile.description.split(': ', 1)[-1]}; the "
        f"workers face `little` at f = {first['f']} of n = {first['n']}, momentum at the workers. "
        f"{present} of {expected} cells in complete groups"
        + (f"; {excluded} results left out (see `python -m benchmark validate`)."
           if excluded else "."),
        "Columns T = k: run accuracy (median over the correct servers' models) with the "
        "correct servers gathering every k steps (coordinate-wise median of their models), "
        "mean ± the half-width of the 95 % t-interval over seeds. At the largest T: the "
        "worst correct server's run accuracy and the largest drift among correct servers "
        "over the mean model's norm (means over seeds). Not ranked.",
    ]
    headers = ["defense", "f_ps", "server attack", *(f"T = {period}" for period in periods),
               f"worst server (T = {longest})", f"largest drift / norm (T = {longest})"]
    return Grid(headers, rows, f"Byzantine servers ({task})", "servers", notes,
                {"task": task})


def _drift_cell(values: list[float] | None) -> Cell:
    if not values or any(math.isnan(value) for value in values):
        return Cell("—")
    mean = math.fsum(values) / len(values)
    return Cell(f"{mean:.2g}", mean)
