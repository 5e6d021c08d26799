"""The leaderboard: LEADERBOARD.md, a static site and its plots, as a pure function of
the stored results (the same files give the same bytes: nothing depends on the clock,
the machine or the order files are listed in).

    collect   which results enter, and why the others do not
    scores    run accuracy, worst case, summaries, momentum gain
    statistics  intervals, paired tests, ranks with tie groups
    kernels   the speed table (results/kernels/*.json)
    grids     the tables as rows of cells, shared by the Markdown and the pages
    metadata  a defense's plugin metadata and links (paper, source, page)
    provenance  profile, seeds, commits and newest run, from the run records
    servers   the ByzSGD section (replicated servers on digits; not ranked)
    local     a defense's scratch results ranked against the committed ones (`rank`)
    render    Markdown and index.html (templates/)
    pages     a page per defense (site/defenses/)
    plots     seaborn figures for the site
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import matrix
from benchmark.api import UsageError

from . import collect, grids, kernels, metadata, pages, render, scores, servers

# The board's profiles, in order: each task is shown from the first profile that lists it,
# so the real tasks come from `board` (sized for one machine) and the rest, digits (the
# laptop board) last, from `standard` (the complete matrix).
BOARDS = ("board", "standard")
# The task of the laptop board: `python -m benchmark rank` runs a defense's cells of it and
# ranks them against the committed ones (leaderboard.local).
LAPTOP_TASK = "digits"
# Profiles shown in a section of their own, not ranked (leaderboard.servers), whose results
# are committed and validated like the boards'.
SECTIONS = ("servers",)
# Profiles whose results are committed and validated but shown elsewhere: `paper` feeds
# docs/reproduction.md (`python -m benchmark reproduce`).
REPRODUCED = ("paper",)


def board_profiles(names=BOARDS) -> list[matrix.Profile]:
    """The profiles of the board, each narrowed to the tasks no earlier profile lists."""
    if isinstance(names, (str, matrix.Profile)):
        names = [names]
    profiles, claimed = [], set()
    for name in names:
        profile = matrix.load_profile(name) if isinstance(name, str) else name
        tasks = [task for task in profile.tasks if task not in claimed]
        claimed.update(tasks)
        if tasks:
            profiles.append(dataclasses.replace(profile, tasks=tasks))
    return profiles


def task_profile(task: str, names=BOARDS) -> matrix.Profile:
    """The board's profile for `task` (the first of `names` that lists it), narrowed to that
    task; UsageError if none lists it."""
    owner = next((profile for profile in board_profiles(names) if task in profile.tasks), None)
    if owner is None:
        given = [names] if isinstance(names, (str, matrix.Profile)) else names
        listed = ", ".join(getattr(name, "name", name) for name in given)
        raise UsageError(f"no profile among {listed} lists the task {task}: the board ranks "
                         f"{task} from the first of its profiles ({', '.join(BOARDS)}) that "
                         "lists it")
    return dataclasses.replace(owner, tasks=[task])


@dataclass
class Built:
    markdown: str
    page: render.Page
    collection: collect.Collection
    board: scores.Board
    defense_pages: list[pages.DefensePage] = field(default_factory=list)


def _plots(board: scores.Board, results: list[collect.Result], site: Path):
    """Draws every setting's plots under site/plots/; returns {anchor: [(caption, path)]}."""
    from . import plots

    by_setting: dict[tuple, list[collect.Result]] = {}
    for result in results:
        if not result.is_baseline:
            by_setting.setdefault(result.setting, []).append(result)
    drawn = {}
    for table in board.every_table:
        shown = {row.defense for row in table.rows}
        anchor = grids.slug(table)
        group = [result for result in by_setting[table.setting]
                 if result.record["config"]["defense"] in shown]
        entries = []
        for kind, caption, draw in (
                ("heatmap", "mean run accuracy, defense × attack", plots.heatmap),
                ("curves", "test accuracy over steps (band: ± sd over seeds)", plots.curves),
                ("ratio", "honest deviation / norm vs the rule's bound", plots.ratio)):
            relative = f"plots/{anchor}-{kind}.png"
            if draw(table, group, site / relative) is not False:
                entries.append((caption, relative))
        drawn[anchor] = entries
    return drawn


def _repository_from(site: Path) -> str:
    """The relative way from the site folder to the repository root (for source links),
    `../../` when the site lies outside the repository (as from leaderboard/site/)."""
    site = site.resolve()
    if not site.is_relative_to(metadata.REPOSITORY):
        return render.SITE_TO_REPOSITORY
    way = Path(os.path.relpath(metadata.REPOSITORY, site)).as_posix()
    return "" if way == "." else way + "/"


def build(results: Path | str, profile=BOARDS,
          site: Path | str | None = None, draw: bool = True) -> Built:
    """Scores the results under `results`/<profile>/ for each of the board's profiles
    (`profile`: one profile, its name, or several: see `board_profiles`); with `site`,
    also writes the site there (index.html, defenses/<name>.html, and plots/ when `draw`).
    Returns the Markdown and what it shows."""
    profiles = board_profiles(profile)
    collection = collect.collect_many(results, profiles)
    metadata.use(collection.facts.defenses)
    board = scores.build(collection.results)
    measurements, kernel_problems = kernels.load(results)
    drawn = None
    if site is not None:
        site = Path(site)
        for stale in ("plots", pages.FOLDER):  # no plot or page of an older board stays
            shutil.rmtree(site / stale, ignore_errors=True)
        site.mkdir(parents=True, exist_ok=True)
        if draw:
            drawn = _plots(board, collection.results, site)
    page = render.page([(p.name, p.tasks) for p in profiles], board, collection,
                       measurements, kernel_problems, drawn)
    page.servers = servers.section(results)
    defense_pages = pages.build(board, page, measurements)
    if site is not None:
        repository = _repository_from(site)
        (site / "index.html").write_text(render.html(page, repository))
        pages.write(site, defense_pages, page, repository)
    return Built(render.markdown(page), page, collection, board, defense_pages)
