"""The tables of the board as `Grid`s: a header row and rows of `Cell`s (the text shown,
the value a click on the header sorts by, and what the text links to), which render.py
writes as Markdown and HTML and pages.py as the defense pages, so they never disagree."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


from . import metadata
from .collect import Collection
from .kernels import Measurement
from .scores import Row, Stat, Summary, SummaryRow, Table, setting_order

DASH = "—"
SETTING_KEYS = ("task", "momentum_at", "f")


@dataclass(frozen=True)
class Cell:
    """`link` is (kind, target): ("url", an address), ("source", a path relative to the
    repository), ("setting", a table's anchor on the board), ("defense", a defense name:
    its components' source files in Markdown, its page on the site) or ("page", a defense
    name: its page on the site, plain text in Markdown)."""
    text: str
    sort: float | str | None = None   # None: sorts last
    link: tuple[str, str] | None = None


@dataclass
class Grid:
    headers: list[str]
    rows: list[list[Cell]]
    title: str = ""
    anchor: str = ""
    notes: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)  # data-* filters on the page
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, relative path)
    sticky: bool = False  # rank and defense, its first two columns, stay in view when it
    # scrolls sideways

    @property
    def text_columns(self) -> set[int]:
        """The columns that hold words rather than numbers (aligned left on the page)."""
        return {index for row in self.rows for index, cell in enumerate(row)
                if isinstance(cell.sort, str)}

    @staticmethod
    def row_defense(row: list[Cell]) -> str | None:
        """The defense a row is about (for the page's search box), if any."""
        return next((cell.link[1] for cell in row
                     if cell.link and cell.link[0] in ("defense", "page")), None)


def stat_cell(stat: Stat | None) -> Cell:
    """Mean ± the half-width of its 95 % interval."""
    if stat is None:
        return Cell(DASH)
    half = stat.half_width
    text = f"{stat.mean:.3f}" if math.isnan(half) else f"{stat.mean:.3f} ± {half:.3f}"
    return Cell(text, stat.mean)


def mean_cell(stat: Stat | None) -> Cell:
    return Cell(DASH) if stat is None else Cell(f"{stat.mean:.3f}", stat.mean)


def number_cell(value: float | None, form: str) -> Cell:
    return Cell(DASH) if value is None else Cell(format(value, form), value)


def rank_cell(rank: int | None) -> Cell:
    return Cell(DASH) if rank is None else Cell(str(rank), rank)


def defense_cell(name: str) -> Cell:
    return Cell(name, name, ("defense", name))


SERVER_DATA_ANCHOR = "-server-data"  # ends the anchors of the server-data rules' tables


def slug(table: Table) -> str:
    return ("-".join(str(value) for _, value in table.setting).replace(" ", "_")
            .replace(":", "@").replace(",", "&").replace("/", "_").replace("=", "~")
            + (SERVER_DATA_ANCHOR if table.server_data else ""))


def summary_anchor(summary: Summary) -> str:
    return ("summary-" + "-".join(str(v) for _, v in summary.group).replace(" ", "_")
            + (SERVER_DATA_ANCHOR if summary.server_data else ""))


SUMMARY_HEADERS = ["rank", "worst case, mean over f", "seeds", "f values ranked",
                   "worker − update"]


def summary_cells(summary: Summary, row: SummaryRow) -> list[Cell]:
    """The summary row's cells after its defense: rank first."""
    score = row.score
    return [rank_cell(row.rank), stat_cell(score),
            Cell(str(score.k) if score else DASH, score.k if score else None),
            Cell(f"{row.covered}/{summary.settings}", row.covered), number_cell(row.gain, "+.3f")]


def summary_grid(summary: Summary) -> Grid:
    rows = []
    for row in summary.rows:
        rank, *rest = summary_cells(summary, row)
        rows.append([rank, defense_cell(row.defense), *rest])
    values = dict(summary.group)
    return Grid(SUMMARY_HEADERS[:1] + ["defense"] + SUMMARY_HEADERS[1:], rows, summary.title(),
                summary_anchor(summary),
                attributes={"task": values["task"], "placement": values["momentum_at"]},
                sticky=True)


def result_headers(attacks: list[str]) -> list[str]:
    """The headers of `result_cells`."""
    return ["worst case", "seeds", "worst attack", "clean", *attacks, "condition held",
            "worker − update", "failed runs"]


def result_cells(row: Row, attacks: list[str]) -> list[Cell]:
    """A setting row's cells after its rank and defense."""
    seeds = row.worst.k if row.worst else None
    return [stat_cell(row.worst), Cell(DASH if seeds is None else str(seeds), seeds),
            Cell(row.worst_attack or DASH, row.worst_attack), stat_cell(row.clean),
            *(mean_cell(row.attacks.get(attack)) for attack in attacks),
            number_cell(row.condition_share, ".0%"), number_cell(row.gain, "+.3f"),
            Cell(str(row.failed), row.failed)]


def setting_grid(table: Table) -> Grid:
    rows = [[rank_cell(row.rank), defense_cell(row.defense), *result_cells(row, table.attacks)]
            for row in table.rows]
    notes = []
    if table.baseline is not None:
        notes.append(f"Baseline (average of the n − f honest workers, no attack): "
                     f"{stat_cell(table.baseline).text}")
    return Grid(["rank", "defense", *result_headers(table.attacks)], rows, table.title(),
                slug(table), notes, {"task": table.task, "placement": table.placement,
                                     "f": str(table.values["f"])}, sticky=True)


def _peer_cell(m: Measurement) -> Cell:
    if m.ratio_to_peer is None:
        return Cell(DASH)
    mark = "" if m.peer_agrees else " (differs)"
    return Cell(f"{m.ratio_to_peer:.3g}{mark}", m.ratio_to_peer)


def speed_grid(measurements: list[Measurement]) -> Grid:
    peers = sorted({m.peer for m in measurements if m.peer})
    rows = [[Cell(m.device, m.device), Cell(str(m.d), m.d), Cell(str(m.n), m.n),
             Cell(str(m.f), m.f), Cell(m.defense, m.defense, ("page", m.defense)),
             number_cell(m.median_ms, ".3g"), number_cell(m.ratio_to_mean, ".3g"),
             number_cell(m.ratio_to_gram, ".3g"), *([_peer_cell(m)] if peers else [])]
            for m in measurements]
    notes = ["Median time of one aggregation as `python -m benchmark kernels` recorded it in "
             "results/kernels/*.json (on CPU, the thread's CPU time, each call starting with its "
             "input out of the caches), and its ratio to a plain mean and to the n × n Gram "
             "matrix of the same inputs."]
    if peers:
        notes.append(f"× peer: our time over {', '.join(peers)}'s implementation of the same "
                     "rule, timed in the same rounds on the same input (below 1: ours is "
                     "faster); *(differs)*: the peer returned another vector, so its "
                     "definition differs and the ratio compares the same kind of computation.")
    return Grid(["device", "d", "n", "f", "defense", "median ms", "× mean", "× Gram",
                 *(["× peer"] if peers else [])], rows, "Kernel speed", "speed", notes)


def excluded_grid(collection: Collection, kernel_problems: list[tuple[str, str]]) -> Grid:
    rows = [[Cell(e.where, e.where), Cell(e.reason, e.reason), Cell(str(e.count), e.count),
             Cell(e.example, e.example)] for e in collection.exclusions]
    rows += [[Cell(name, name), Cell(reason, reason), Cell("1", 1), Cell(name, name)]
             for name, reason in kernel_problems]
    return Grid(["task/defense", "reason", "results", "example"], rows,
                "Excluded results", "excluded")


def _value_cell(value) -> Cell:
    if value is None:
        return Cell(DASH)
    return Cell(str(value), value if isinstance(value, (int, float)) else str(value))


def coverage_grid(collection: Collection, task_order: list[str] = ()) -> Grid:
    """Cells present / expected per task and setting (`collect.Collection.coverage`), tasks
    in `task_order` (others after them, by name); a task not started is one line."""
    def task_rank(task):
        return (list(task_order).index(task), "") if task in task_order else (len(task_order), task)

    items = sorted(collection.coverage.items(),
                   key=lambda item: (task_rank(item[0][0]), setting_order(item[0][1])))
    extras = list(dict.fromkeys(key for (_, setting), _ in items for key, _ in setting
                                if key not in SETTING_KEYS))
    started = {task for (task, _), (present, _) in items if present}
    rows = []
    for task in sorted({task for (task, _), _ in items}, key=task_rank):
        if task not in started:
            expected = sum(counts[1] for (name, _), counts in items if name == task)
            rows.append([Cell(task, task), Cell("all", None), Cell("all", None),
                         *(Cell(DASH) for _ in extras), Cell(f"0 / {expected}", 0),
                         number_cell(0.0, ".0%")])
            continue
        for (name, setting), (present, expected) in items:
            if name != task:
                continue
            values = dict(setting)
            share = present / expected if expected else None
            rows.append([Cell(task, task),
                         *(_value_cell(values.get(key)) for key in ("momentum_at", "f", *extras)),
                         Cell(f"{present} / {expected}", present), number_cell(share, ".0%")])
    return Grid(["task", "placement", "f", *extras, "cells present / expected", "complete"],
                rows, "Coverage", "coverage",
                ["Cells stored and usable per task and setting, over every defense the "
                 "task's profile lists or that has results (a defense enters a setting "
                 "only with all of its cells there)."])


def defenses_grid(defenses: list[str]) -> Grid:
    """The plugins behind the board's defenses: citation (linked to a search for the
    paper), requirement and source file."""
    names = sorted({metadata.plugin_name(part) for defense in defenses
                    for part in metadata.name_parts(defense)})
    rows = []
    for plugin in map(metadata.component, names):
        paper = (Cell(plugin.reference, plugin.reference, ("url", plugin.paper_url))
                 if plugin.reference else Cell(DASH))
        source = (Cell(plugin.source, plugin.source, ("source", plugin.source))
                  if plugin.source else Cell(DASH))
        rows.append([Cell(plugin.name, plugin.name), paper,
                     Cell(plugin.requirement or DASH, plugin.requirement or None), source])
    return Grid(["plugin", "paper", "requirement", "source"], rows, "Defenses", "defenses",
                ["Compositions such as `nnm+trmean` chain a pre-aggregator and a rule; a "
                 "name's options follow a colon. Paper links search Google Scholar for the "
                 "plugin's citation."])
