"""A defense's results from a scratch folder, ranked against the committed ones
(`python -m benchmark rank`).

The board's own collection (`collect`) and scores (`scores.build`) for one profile, with
the defense's cells read from a scratch results root instead of the committed one
(`collect.collect_local`): its committed cells, if it has any, are set aside, so a
defense already on the board is re-ranked from its local copy. Neither root is written.
The board that comes out is the one `python -m benchmark leaderboard` would draw for the
profile's tasks if the scratch cells were committed; `Standing.settings` says where the
defense stands in each setting of its slice, and why it is not ranked where it is not.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmark import matrix, store

from . import collect, scores

RANKED, INVALID, INCOMPLETE = "ranked", "invalid", "incomplete"


@dataclass
class Setting:
    """The defense in one setting (task, placement, f, grid values) of its slice."""
    table: scores.Table           # the setting's table on the board (empty if none ranks)
    expected: int                 # valid cells the profile has for the defense here
    usable: int                   # of them, found in scratch and sound (complete or not)
    invalid: str | None           # why its cells here are invalid, when every one is
    row: scores.Row | None        # its row in the table, when ranked

    @property
    def status(self) -> str:
        if self.expected == 0:
            return INVALID
        return RANKED if self.row is not None else INCOMPLETE

    @property
    def ranked(self) -> int:
        """Defenses ranked in the setting's table, this one included when it is."""
        return sum(row.rank is not None for row in self.table.rows)


@dataclass
class Standing:
    defense: str
    board: scores.Board           # the profile's tables and summaries, the defense among them
    settings: list[Setting]       # in the board's order
    exclusions: dict[str, str]    # the defense's scratch folders left out -> why
    replaced: int                 # committed cells of the defense set aside
    collection: collect.Collection

    @property
    def complete(self) -> bool:
        """Ranked in every setting where the profile has valid cells of it."""
        return all(setting.status != INCOMPLETE for setting in self.settings)

    def count(self, status: str) -> int:
        return sum(setting.status == status for setting in self.settings)

    def summaries(self) -> list[tuple[scores.Summary, scores.SummaryRow | None]]:
        """Each summary of the board with the defense's row in it (None if absent)."""
        return [(summary, next((row for row in summary.rows if row.defense == self.defense),
                               None)) for summary in self.board.summaries]

    def reasons(self) -> Counter:
        """Why the defense's scratch folders were left out: reason -> folders."""
        return Counter(self.exclusions.values())


def committed_cells(root: Path | str, cells: list[matrix.Cell]) -> int:
    """How many of the valid `cells` have a result folder under `root`."""
    return sum((store.cell_dir(root, cell.config) / "run.json").is_file()
               for cell in cells if cell.invalid is None)



def _section_of(board: scores.Board, defense: str) -> scores.Board:
    """The part of the board that ranks `defense`: the rules with a trusted server data set
    have their own (FLTrust's threat model), apart from the others."""
    extra = board.server_data
    if extra and any(row.defense == defense for table in extra.tables for row in table.rows):
        return extra
    return board

def standing(root: Path | str, scratch: Path | str, profile: matrix.Profile,
             cells: list[matrix.Cell]) -> Standing:
    """Ranks the defense of `cells` (its slice of `profile`, as `matrix.expand` gives it,
    invalid cells included) from its results under `scratch` against the results under
    `root`, both only read."""
    (defense,) = {cell.config.defense for cell in cells}
    valid = [cell.config for cell in cells if cell.invalid is None]
    collection = collect.collect_local(root, profile, scratch, valid)
    board = _section_of(scores.build(collection.results), defense)
    mine = {store.cell_dir(scratch, config).as_posix() for config in valid}
    usable: Counter = Counter(result.setting for result in collection.sound
                              if result.record["config"]["defense"] == defense
                              and not result.is_baseline)
    by_setting: dict[tuple, list[matrix.Cell]] = defaultdict(list)
    for cell in cells:
        by_setting[collect.setting_of(cell.label)].append(cell)
    tables = {table.setting: table for table in board.tables}
    settings = []
    for key in sorted(by_setting, key=scores.setting_order):
        group = by_setting[key]
        table = tables.get(key) or scores.Table(key, group[0].config.n, [], [])
        expected = sum(cell.invalid is None for cell in group)
        row = next((row for row in table.rows if row.defense == defense), None)
        settings.append(Setting(table, expected, usable[key],
                                None if expected else group[0].invalid, row))
    exclusions = {path: reason for path, reason in collection.reasons.items() if path in mine}
    return Standing(defense, board, settings, exclusions, committed_cells(root, cells),
                    collection)
