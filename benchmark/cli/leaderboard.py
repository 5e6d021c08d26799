"""`leaderboard`: regenerate LEADERBOARD.md and the static site from results/."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..api import UsageError
from ._common import add_results_location


def register(commands) -> None:
    parser = commands.add_parser(
        "leaderboard", help="regenerate LEADERBOARD.md and the site from the stored results",
        description="Rebuild LEADERBOARD.md and the static site (index.html, a page per "
                    "defense and seaborn plots) "
                    "from RESULTS/<profile>/, as a pure function of those files: the same "
                    "files give the same bytes. Stale, quick-profile, malformed, duplicated, "
                    "hand-edited and incomplete results are left out and listed with the "
                    "reason.")
    add_results_location(parser)
    parser.add_argument("--out", default="LEADERBOARD.md",
                        help="Markdown file to write (default: LEADERBOARD.md)")
    parser.add_argument("--site", default="leaderboard/site",
                        help="folder of the static site (default: leaderboard/site)")
    parser.add_argument("--no-site", action="store_true", help="write only the Markdown")
    parser.add_argument("--no-plots", action="store_true",
                        help="write the site without plots (faster)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --out differs from what the results "
                             "give (for CI)")
    parser.set_defaults(handler=main)


def main(args) -> int:
    import leaderboard

    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"no results folder {results}; run `python -m benchmark run` first "
                         "or give --results DIR")
    started = time.monotonic()
    site = None if args.no_site or args.check else Path(args.site)
    built = leaderboard.build(results, args.profile or leaderboard.BOARDS, site=site,
                              draw=not args.no_plots)
    out = Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else None
        if current != built.markdown:
            print(f"{out} is not what `python -m benchmark leaderboard` gives from "
                  f"{results}/: regenerate it and commit the result", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_text(built.markdown)
    counts = built.page.counts
    print(f"{out}: {counts['results']} results, {counts['defenses']} defenses, "
          f"{counts['settings']} settings, {counts['excluded']} excluded "
          f"({time.monotonic() - started:.1f} s)")
    if site is not None:
        print(f"site: {site / 'index.html'} and {len(built.defense_pages)} defense pages "
              f"in {site / 'defenses'}")
    for exclusion in built.collection.exclusions[:10]:
        print(f"  excluded {exclusion.count} in {exclusion.where}: {exclusion.reason}")
    if len(built.collection.exclusions) > 10:
        print(f"  ... {len(built.collection.exclusions) - 10} more reasons in {out}")
    return 0
