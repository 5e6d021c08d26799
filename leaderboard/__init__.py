"""The leaderboard: LEADERBOARD.md, a static site and its plots, as a pure function of
the stored results (the same files give the same bytes: nothing depends on the clock,
the machine or the order files are listed in).

    collect   which results enter, and why the others do not
    scores    run accuracy, worst case, summaries, momentum gain
    statistics  intervals, paired tests, ranks with tie groups
    kernels   the speed table (results/kernels/*.json)
    render    Markdown and HTML (templates/)
    plots     seaborn figures for the site
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmark import matrix

from . import collect, kernels, render, scores

PROFILE = "standard"


@dataclass
class Built:
    markdown: str
    page: render.Page
    collection: collect.Collection
    board: scores.Board


def _plots(board: scores.Board, results: list[collect.Result], site: Path):
    """Draws every setting's plots under site/plots/; returns {anchor: [(caption, path)]}."""
    from . import plots

    by_setting: dict[tuple, list[collect.Result]] = {}
    for result in results:
        if not result.is_baseline:
            by_setting.setdefault(result.setting, []).append(result)
    drawn = {}
    for table in board.tables:
        anchor, group = render.slug(table), by_setting[table.setting]
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


def build(results: Path | str, profile: matrix.Profile | str = PROFILE,
          site: Path | str | None = None, draw: bool = True) -> Built:
    """Scores the results under `results`/<profile>/; with `site`, also writes the site
    there (index.html, and plots/ when `draw`). Returns the Markdown and what it shows."""
    if isinstance(profile, str):
        profile = matrix.load_profile(profile)
    collection = collect.collect(results, profile)
    board = scores.build(collection.results)
    measurements, kernel_problems = kernels.load(results)
    drawn = None
    if site is not None:
        site = Path(site)
        shutil.rmtree(site / "plots", ignore_errors=True)  # no plot of an older board stays
        site.mkdir(parents=True, exist_ok=True)
        if draw:
            drawn = _plots(board, collection.results, site)
    page = render.page(profile.name, board, collection, measurements, kernel_problems, drawn)
    if site is not None:
        (site / "index.html").write_text(render.html(page))
    return Built(render.markdown(page), page, collection, board)
