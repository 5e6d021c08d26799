"""`rank`: a defense's laptop slice of the board, run into a scratch folder and ranked
against the committed results, as the leaderboard ranks them."""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from tabulate import tabulate

from .. import matrix, store
from ..api import UsageError
from ..executors import POSTPONED, prepare_results
from ._common import duration
from .run import cap_jobs, execute

SCRATCH = "results-local"   # git-ignored
MARK = "(not committed)"
SHOWN_REASONS = 5


def register(commands) -> None:
    parser = commands.add_parser(
        "rank", help="run a defense's digits cells of the board into a scratch folder and "
                     "show where it would rank (the committed results are only read)",
        description="Run the board's laptop slice for one defense (the digits cells of the "
                    "standard profile: 510 cells, fewer where the rule's requirement rejects "
                    "an f; about 1 s a cell on one core: measured 8 minutes in all with "
                    "--jobs 1, 7 of them running cells and 1 ranking, less with more --jobs) "
                    "into --scratch (default "
                    f"{SCRATCH}/, git-ignored: SCRATCH/standard/digits/DEFENSE/...), then "
                    "rank it against the committed digits results under --results exactly as "
                    "`python -m benchmark leaderboard` does (same checks, scores, statistics "
                    "and order) and print the digits summaries with the defense marked "
                    f"'{MARK}', its place in each setting and one line saying where it "
                    "would rank. Nothing under --results is written; a defense already on "
                    "the board is re-ranked from its local copy. Complete cells in the "
                    "scratch folder are skipped, so an interrupted or budgeted command "
                    "resumes when rerun; a cell whose rule's behaviour version changed is "
                    "run again (bump `version=` after changing what your rule computes, or "
                    "delete the scratch folder). Exit 0 when the slice is complete, 1 when a "
                    "setting still lacks cells, 2 on bad input (nothing written).")
    parser.add_argument("--defense", required=True,
                        help="defense name[:options], e.g. mine (defenses/mine.py, copied "
                             "from defenses/template.py), krum:m=5, nnm+trmean")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="local parallel processes, one thread each (default and most: "
                             "the CPU count); with 1, cells run one at a time")
    parser.add_argument("--budget", type=duration, metavar="DURATION",
                        help="start no cell after this much wall-clock time, e.g. 10m; the "
                             "ranking then says which settings lack cells, and the same "
                             "command continues where it stopped")
    parser.add_argument("--scratch", default=SCRATCH, metavar="DIR",
                        help=f"where this command's cells go (default: {SCRATCH}); never "
                             "inside --results")
    parser.add_argument("--results", default="results",
                        help="the committed results to rank against, only read (default: "
                             "results)")
    parser.add_argument("--profile", default=None,
                        help="the profile whose digits cells are run and ranked (default: "
                             "the board's for digits, standard)")
    parser.set_defaults(handler=main)


def _profile(name: str | None) -> matrix.Profile:
    import leaderboard
    from leaderboard.collect import NON_LEADERBOARD_PROFILES

    if name in NON_LEADERBOARD_PROFILES:
        raise UsageError(f"--profile {name}: its results never enter the leaderboard, so "
                         "nothing ranks them; leave --profile out (the board's profile, "
                         "standard)")
    try:
        return leaderboard.task_profile(leaderboard.LAPTOP_TASK, name or leaderboard.BOARDS)
    except UsageError as error:
        raise UsageError(f"--profile {name}: {error}; leave --profile out") from None


def _roots(args, profile: matrix.Profile) -> tuple[Path, Path]:
    results, scratch = Path(args.results), Path(args.scratch)
    (task,) = profile.tasks
    if not (results / profile.name / task).is_dir():
        raise UsageError(f"no committed {task} results in {results / profile.name / task}: "
                         "give --results the results folder the board is built from (the "
                         "repository's results/)")
    committed, local = results.resolve(), scratch.resolve()
    if committed.is_relative_to(local) or local.is_relative_to(committed):
        raise UsageError(f"--scratch {scratch} and --results {results} overlap: the "
                         "committed results are only read; give --scratch a folder outside "
                         f"them (default: {SCRATCH})")
    return results, scratch


def _slice(profile: matrix.Profile, defense: str) -> list[matrix.Cell]:
    try:
        cells = matrix.expand(profile, defense)
    except UsageError as error:
        if str(error).startswith("unknown defense"):
            raise UsageError(f"{error}; a new rule is a file in defenses/ (copy "
                             "defenses/template.py to defenses/<name>.py)") from None
        raise
    if all(cell.invalid is not None for cell in cells):
        raise UsageError(f"every {profile.tasks[0]} cell of {defense} is invalid "
                         f"({cells[0].invalid}), so nothing would be ranked: fix the rule's "
                         "requirement or its options")
    return cells


def _summary_table(summary, defense: str) -> str:
    from leaderboard.grids import Grid, summary_grid

    grid = summary_grid(summary)
    rows = []
    for row in grid.rows:
        texts = [cell.text for cell in row]
        if Grid.row_defense(row) == defense:
            texts[1] = f"{defense} {MARK}"
        rows.append(texts)
    return tabulate(rows, headers=grid.headers, disable_numparse=True)


def _setting_line(setting) -> str:
    from leaderboard import local
    from leaderboard.grids import stat_cell

    title = setting.table.title()
    if setting.status == local.INVALID:
        return f"  {title}: not run, its cells are invalid ({setting.invalid})"
    if setting.status == local.INCOMPLETE:
        return (f"  {title}: not ranked, {setting.usable} of its {setting.expected} cells "
                "usable")
    row = setting.row
    place = "unranked" if row.rank is None else f"rank {row.rank} of {setting.ranked}"
    worst = ("" if row.worst is None else
             f", worst case {stat_cell(row.worst).text} under {row.worst_attack}")
    return f"  {title}: {place}{worst}, {row.failed} failed runs (scored 0)"


def _verdict(standing, task: str) -> str:
    from leaderboard import local

    places = []
    for summary, row in standing.summaries():
        placement = dict(summary.group)["momentum_at"]
        ranked = sum(other.rank is not None for other in summary.rows)
        places.append(f"unranked at {placement}" if row is None or row.rank is None
                      else f"{row.rank} of {ranked} at {placement}")
    settings = len(standing.settings)
    line = (f"{standing.defense} {MARK} would rank {', '.join(places)} (momentum placement, "
            f"summary over f); complete in {standing.count(local.RANKED)} of the {settings} "
            f"{task} settings")
    invalid = [s for s in standing.settings if s.status == local.INVALID]
    if invalid:
        line += (f", invalid in {len(invalid)} (its requirement: {invalid[0].invalid}; the "
                 "board shows — there)")
    return line + "."


def _report(standing, task: str, scratch: Path) -> int:
    from leaderboard import local

    for summary, _ in standing.summaries():
        print(f"\n### Summary: {summary.title()}\n")
        print(_summary_table(summary, standing.defense))
    print(f"\n{standing.defense} {MARK}, setting by setting:")
    for setting in standing.settings:
        print(_setting_line(setting))
    for reason, count in standing.reasons().most_common(SHOWN_REASONS):
        print(f"  {count} of its cells in {scratch}/ left out: {reason}")
    print()
    print(_verdict(standing, task))
    if standing.complete:
        return 0
    missing = sum(s.expected - s.usable for s in standing.settings
                  if s.status == local.INCOMPLETE)
    print(f"INCOMPLETE: {standing.count(local.INCOMPLETE)} setting(s) lack cells ({missing} "
          "missing or left out), so the ranking above is partial; rerun the same command "
          "to continue")
    return 1


def main(args) -> int:
    from leaderboard import local

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1 (local processes, e.g. "
                         f"--jobs {os.cpu_count() or 1}, the CPU count)")
    profile = _profile(args.profile)
    (task,) = profile.tasks
    results, scratch = _roots(args, profile)
    cells = _slice(profile, args.defense)
    defense = cells[0].config.defense
    valid = [cell.config for cell in cells if cell.invalid is None]
    done = [config for config in valid
            if store.is_complete(store.cell_dir(scratch, config), config)]
    configs = [config for config in valid if config not in done]
    replaced = local.committed_cells(results, cells)
    prepare_results(scratch, valid, "--scratch")
    cap_jobs(args)
    print(f"rank: {defense} on {task} (profile {profile.name}): {len(valid)} cells "
          f"({len(done)} already complete, {len(cells) - len(valid)} invalid), "
          f"{args.jobs} process(es); cells in {scratch}/, {results}/ only read")
    if replaced:
        print(f"{defense} is on the board ({replaced} committed cells): they are set aside, "
              f"not changed, and the local copy in {scratch}/ is ranked in their place (if "
              "its numbers differ from the board's, `python -m benchmark verify` tells "
              "whether the committed cells reproduce on this machine)")
    counts = Counter(skipped=len(done)) if done else Counter()
    if configs:
        deadline = time.time() + args.budget if args.budget is not None else None
        execute(configs, scratch, counts, jobs=args.jobs, deadline=deadline)
    print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    if counts[POSTPONED]:
        print(f"the budget ran out: {counts[POSTPONED]} cells postponed")
    print(f"ranking against {results}/ as `python -m benchmark leaderboard` does ...")
    started = time.monotonic()
    standing = local.standing(results, scratch, profile, cells)
    print(f"({time.monotonic() - started:.0f} s)")
    return _report(standing, task, scratch)
