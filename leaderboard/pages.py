"""A page per defense: site/defenses/<name>.html, with the plugin metadata of each of its
components, its row in every summary and setting table, its kernel speed rows and links
to the settings' plots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import metadata, render
from .grids import (SUMMARY_HEADERS, Cell, Grid, rank_cell, result_cells, result_headers,
                    slug, speed_grid, summary_anchor, summary_cells)
from .kernels import Measurement
from .scores import Board

FOLDER = metadata.PAGES_FOLDER


@dataclass
class DefensePage:
    name: str
    components: list[tuple[str, metadata.Component]]  # (the name's part, its plugin)
    summaries: Grid
    settings: Grid
    speed: Grid | None
    plots: list[tuple[str, str, list[tuple[str, str]]]]  # (setting, anchor, [(caption, path)])

    @property
    def file(self) -> str:
        return metadata.page_file(self.name)


def _summaries(board: Board, name: str) -> Grid:
    rows = [[Cell(summary.title(), summary.title(), ("setting", summary_anchor(summary))),
             *summary_cells(summary, row)]
            for summary in board.every_summary for row in summary.rows if row.defense == name]
    return Grid(["summary", *SUMMARY_HEADERS], rows, "Summaries", "summaries")


def _settings(board: Board, name: str) -> Grid:
    present = [(table, row) for table in board.every_table for row in table.rows
               if row.defense == name]
    attacks = sorted({attack for table, _ in present for attack in table.attacks})
    rows = [[Cell(table.title(), table.title(), ("setting", slug(table))),
             rank_cell(row.rank), *result_cells(row, attacks)] for table, row in present]
    return Grid(["setting", "rank", *result_headers(attacks)], rows, "Settings", "settings",
                ["The defense's row of each setting table; ranks are within that table."])


def build(board: Board, page: render.Page, measurements: list[Measurement]) -> list[DefensePage]:
    """One page per defense with a row on the board."""
    plots = {grid.anchor: grid.plots for grid in page.settings + page.server_data_settings}
    built = []
    for name in page.ranked_defenses:
        mine = [m for m in measurements if m.defense == name]
        settings = [(table.title(), slug(table), plots.get(slug(table), []))
                    for table in board.every_table
                    if any(row.defense == name for row in table.rows)]
        parts = metadata.name_parts(name)
        built.append(DefensePage(name, list(zip(parts, metadata.components(name))),
                                 _summaries(board, name),
                                 _settings(board, name), speed_grid(mine) if mine else None,
                                 [entry for entry in settings if entry[2]]))
    return built


def html(defense: DefensePage, page: render.Page,
         repository: str = render.SITE_TO_REPOSITORY) -> str:
    links = render.Links("../" + repository, "../index.html", "",
                         frozenset(page.ranked_defenses))
    template = render.environment(links).get_template("defense.html.j2")
    return template.render(defense=defense, profile=page.profile)


def write(site: Path, defenses: list[DefensePage], page: render.Page,
          repository: str = render.SITE_TO_REPOSITORY) -> None:
    """Writes site/defenses/<file> for each page (the folder holds nothing else)."""
    folder = site / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for defense in defenses:
        (folder / defense.file).write_text(html(defense, page, repository))
