"""Scores and ranks: the numbers of the leaderboard's tables.

Run accuracy: the mean test accuracy of the evaluations in the last 10 % of a run's steps
(steps ≥ steps − ⌈steps / 10⌉: the last two evaluations on digits, the last seven on the
paper's MNIST shape), so that one noisy final evaluation does not decide a run. A run that
diverged or failed (the defense raised, returned garbage or ran past its time budget)
scores 0: the model it leaves is of no use.

Worst case: the attack (the clean run `none` excluded) under which the defense's mean run
accuracy over seeds is lowest; the defense's per-seed values are its runs under that
attack, so the worst-case figure is always one of its attack columns.

Ranks (leaderboard.statistics): paired t-tests over seeds, Holm-corrected, ranks monotone
in the mean. Tables are per setting (task, placement, f and any grid value), and a summary
per task and placement averages each seed's worst case over the f values (a rule's authors
choose where momentum goes, but not how many workers attack); placements are never
averaged together.

Momentum gain: worst-case mean with momentum at the workers minus at the update.

Rules that use the server's own root data set (FLTrust's threat model: the plugin declares
`server_gradient`) assume more than the others, so they are ranked among themselves, in a
board of their own (`Board.server_data`) built by the same code from their results and
the baselines; the main ranking never sees them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from benchmark.config import PLACEMENTS

from . import metadata, statistics
from .collect import Result
from .statistics import Stat

CLEAN = "none"
SERVER_DATA = "Rules with a trusted server data set (FLTrust's threat model)"
SERVER_DATA_NOTE = (
    "These rules also use a small clean root data set held by the server (FLTrust's "
    "threat model), which the rules above do not have: they are ranked among themselves, "
    "with the same scores and statistics, and never in the tables above.")
GAIN = ("worker", "update")  # momentum gain: first placement minus second
LAST_SHARE = 0.1             # run accuracy: evaluations in the last 10 % of the steps

DEFINITIONS = (
    "**Run accuracy**: the mean test accuracy of the evaluations in the last 10 % of the "
    "run's steps; a run that diverged or failed scores 0.",
    "**Worst case**: the run accuracy under the attack with the lowest mean over seeds "
    "(the clean run excluded). **Clean**: no attack, all n workers honest, the rule still "
    "told f (the cost of robustness when nobody attacks). Attack columns show means over "
    "seeds.",
    statistics.STATEMENT,
    "**Summary** (per task and placement): per seed, the mean worst case over the f values; "
    "a defense is ranked there only if it is ranked at every f. Placements are never "
    "averaged together.",
    "**Condition held**: share of steps where (honest deviation / honest norm)² < the rule's "
    "bound², over all the setting's runs. **Worker − update**: worst-case mean with momentum "
    "at the workers minus at the update. **—**: the rule's requirement on n and f fails "
    "there (e.g. Bulyan needs n ≥ 4f + 3), or the rule states no bound.",
)


def run_accuracy(result: Result) -> float:
    record = result.record
    if record["status"] != "ok":
        return 0.0
    evaluations = result.evaluations()
    if not evaluations:
        return 0.0
    steps = record["config"]["steps"]
    start = steps - math.ceil(steps * LAST_SHARE)
    window = [accuracy for step, accuracy in evaluations if step >= start] \
        or [evaluations[-1][1]]
    return math.fsum(window) / len(window)


@dataclass
class Row:
    defense: str
    rank: int | None
    worst: Stat | None
    worst_attack: str | None
    clean: Stat | None
    attacks: dict[str, Stat]
    condition_share: float | None
    gain: float | None = None
    failed: int = 0               # runs that failed or diverged (scored 0)
    per_seed: dict[int, float] = field(default_factory=dict)  # worst case by seed


@dataclass
class Table:
    setting: tuple                # ((key, value), ...) from the profile's labels
    n: int
    attacks: list[str]            # attacks other than none, sorted
    rows: list[Row]
    baseline: Stat | None = None  # unattacked average of the n - f honest workers
    server_data: bool = False     # a table of rules with a trusted server data set

    @property
    def values(self) -> dict:
        return dict(self.setting)

    @property
    def task(self) -> str:
        return self.values["task"]

    @property
    def placement(self) -> str:
        return self.values["momentum_at"]

    @property
    def group(self) -> tuple:
        """The summary this setting belongs to: (task, placement, grid values)."""
        return summary_group(self.setting)

    def title(self) -> str:
        values = self.values
        extra = "".join(f" · {key} = {value}" for key, value in self.setting
                        if key not in ("task", "momentum_at", "f"))
        return (f"{values['task']} · momentum at {values['momentum_at']} · "
                f"f = {values['f']} of n = {self.n}{extra}{_section(self.server_data)}")


@dataclass
class SummaryRow:
    defense: str
    rank: int | None
    score: Stat | None            # None unless ranked at every f of the group
    covered: int                  # settings of the group where the defense is ranked
    gain: float | None            # mean worker − update over the group's f values


@dataclass
class Summary:
    group: tuple                  # (("task", t), ("momentum_at", p), grid values...)
    settings: int
    rows: list[SummaryRow]
    server_data: bool = False

    def title(self) -> str:
        values = dict(self.group)
        extra = "".join(f" · {key} = {value}" for key, value in self.group
                        if key not in ("task", "momentum_at"))
        return (f"{values['task']} · momentum at {values['momentum_at']}{extra}"
                f"{_section(self.server_data)}")


def _section(server_data: bool) -> str:
    return " · trusted server data" if server_data else ""


@dataclass
class Board:
    tables: list[Table]
    summaries: list[Summary]
    server_data: "Board | None" = None  # rules with a trusted server data set, apart

    @property
    def settings(self) -> int:
        return len(self.tables)

    @property
    def every_table(self) -> list[Table]:
        """The tables, then those of the rules with server data."""
        return self.tables + (self.server_data.tables if self.server_data else [])

    @property
    def every_summary(self) -> list[Summary]:
        return self.summaries + (self.server_data.summaries if self.server_data else [])


def summary_group(setting: tuple) -> tuple:
    return tuple(item for item in setting if item[0] != "f")


def _without_placement(setting: tuple) -> tuple:
    return tuple(item for item in setting if item[0] != "momentum_at")


def setting_order(setting: tuple) -> tuple:
    """How settings are listed: task, grid values, placement, f."""
    values = dict(setting)
    extras = tuple(str(value) for key, value in setting if key not in ("task", "momentum_at", "f"))
    placement = values["momentum_at"]
    return (values["task"], extras,
            PLACEMENTS.index(placement) if placement in PLACEMENTS else len(PLACEMENTS),
            values["f"])


def _row(defense: str, results: list[Result]) -> Row:
    accuracy: dict[str, dict[int, float]] = defaultdict(dict)
    shares = []
    for result in results:
        accuracy[result.label["attack"]][result.label["seed"]] = run_accuracy(result)
        share = result.record["summary"].get("condition_share")
        if share is not None:
            shares.append(share)
    attacks = {attack: Stat.of([seeds[s] for s in sorted(seeds)])
               for attack, seeds in accuracy.items()}
    hostile = sorted(attack for attack in accuracy if attack != CLEAN)
    worst = worst_attack = None
    per_seed = {}
    if hostile:
        worst_attack = min(hostile, key=lambda a: (attacks[a].mean, a))
        per_seed = dict(sorted(accuracy[worst_attack].items()))
        worst = attacks[worst_attack]
    return Row(defense, None, worst, worst_attack, attacks.get(CLEAN),
               {a: attacks[a] for a in hostile},
               math.fsum(shares) / len(shares) if shares else None,
               failed=sum(r.record["status"] != "ok" for r in results), per_seed=per_seed)


def _gains(tables: list[Table]) -> dict[tuple, dict[str, float]]:
    """(setting without placement) -> defense -> worst-case gain of worker over update."""
    worst: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for table in tables:
        for row in table.rows:
            if row.worst is not None:
                worst[_without_placement(table.setting)][row.defense][table.placement] = \
                    row.worst.mean
    return {rest: {defense: by[GAIN[0]] - by[GAIN[1]]
                   for defense, by in defenses.items() if GAIN[0] in by and GAIN[1] in by}
            for rest, defenses in worst.items()}


def _ranked(rows: list, per_seed: dict[str, dict], mean_of) -> list:
    ranks = statistics.ranks(per_seed)
    for row in rows:
        row.rank = ranks.get(row.defense)
    rows.sort(key=lambda r: (r.rank is None, -(mean_of(r) if mean_of(r) is not None
                                               else -math.inf), r.defense))
    return rows


def build(results: list[Result], server_data: Callable[[str], bool] | None = None) -> Board:
    """The board of `results`; the defenses for which `server_data` holds (by default
    `metadata.uses_server_data`: a component declares `server_gradient`) go to
    `Board.server_data` instead, scored against the same baselines."""
    server_data = server_data or metadata.uses_server_data
    defenses = {result.record["config"]["defense"] for result in results
                if not result.is_baseline}
    apart = {defense for defense in defenses if server_data(defense)}
    if not apart:
        return _board(results)
    board = _board([r for r in results if r.record["config"]["defense"] not in apart
                    or r.is_baseline])
    board.server_data = _board([r for r in results if r.record["config"]["defense"] in apart
                                or r.is_baseline], server_data=True)
    return board


def _board(results: list[Result], server_data: bool = False) -> Board:
    by_setting: dict[tuple, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    baselines: dict[tuple, list[float]] = defaultdict(list)
    n_of: dict[tuple, int] = {}
    for result in results:
        if result.is_baseline:
            baselines[_without_placement(result.setting)].append(run_accuracy(result))
            continue
        by_setting[result.setting][result.record["config"]["defense"]].append(result)
        n_of[result.setting] = result.record["config"]["n"]
    tables = []
    for setting in sorted(by_setting, key=setting_order):
        rows = [_row(defense, by_setting[setting][defense])
                for defense in sorted(by_setting[setting])]
        _ranked(rows, {row.defense: row.per_seed for row in rows if row.worst is not None},
                lambda r: r.worst.mean if r.worst else None)
        attacks = sorted({a for row in rows for a in row.attacks})
        base = baselines.get(_without_placement(setting))
        tables.append(Table(setting, n_of[setting], attacks, rows,
                            Stat.of(sorted(base)) if base else None, server_data))
    gains = _gains(tables)
    for table in tables:
        for row in table.rows:
            row.gain = gains.get(_without_placement(table.setting), {}).get(row.defense)
    return Board(tables, _summaries(tables))


def _summaries(tables: list[Table]) -> list[Summary]:
    groups: dict[tuple, list[Table]] = defaultdict(list)
    for table in tables:
        groups[table.group].append(table)
    summaries = []
    for group, members in groups.items():
        ranked: dict[str, list[Row]] = defaultdict(list)
        for table in members:
            for row in table.rows:
                if row.worst is not None:
                    ranked[row.defense].append(row)
        rows, per_seed = [], {}
        for defense in sorted({row.defense for table in members for row in table.rows}):
            covered = ranked.get(defense, [])
            gains = [row.gain for row in covered if row.gain is not None]
            score = None
            if len(covered) == len(members):
                seeds = sorted(set.intersection(*(set(row.per_seed) for row in covered)))
                if seeds:
                    per_seed[defense] = {s: math.fsum(row.per_seed[s] for row in covered)
                                         / len(covered) for s in seeds}
                    score = Stat.of(list(per_seed[defense].values()))
            rows.append(SummaryRow(defense, None, score, len(covered),
                                   math.fsum(gains) / len(gains) if gains else None))
        _ranked(rows, per_seed, lambda r: r.score.mean if r.score else None)
        summaries.append(Summary(group, len(members), rows, members[0].server_data))
    return summaries
