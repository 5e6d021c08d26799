"""`study`: tables over seeds and plots from stored result folders."""
from __future__ import annotations

import os
import time

from ._common import placement

TITLES = {
    "summary": "Runs grouped over seeds (accuracies and condition share in %, mean ± std)",
    "condition": "Share of steps where the variance-norm condition held (%), by momentum "
                 "placement",
    "momentum": "Max test accuracy (%) by momentum placement; reference = average, no attack",
}


def register(commands) -> None:
    parser = commands.add_parser(
        "study", help="tables and plots from stored results",
        description="Load result folders, group runs over seeds, print summary tables and "
                    "write PNG plots and CSV tables into --out: accuracy and loss curves, "
                    "variance-norm ratios against each rule's bound, and update vs worker "
                    "momentum. The same is available in Python: `from benchmark import study`.")
    parser.add_argument("roots", nargs="+", metavar="RESULTS_DIR",
                        help="results roots or single cell folders (searched recursively)")
    parser.add_argument("--out", default="study", help="folder for plots and CSV tables "
                        "(default: study)")
    parser.add_argument("--task", action="append", help="only this task (repeatable)")
    parser.add_argument("--defense", action="append", help="only this defense (repeatable)")
    parser.add_argument("--attack", action="append", help="only this attack (repeatable)")
    parser.add_argument("--momentum", type=placement, action="append",
                        help="only this momentum placement (repeatable)")
    parser.add_argument("--f", type=int, action="append", help="only this f (repeatable)")
    parser.add_argument("--profile", action="append", help="only this profile (repeatable)")
    parser.add_argument("--reach", type=float, nargs="+", metavar="ACCURACY",
                        help="accuracies (fractions) for the steps-to-reach columns "
                             "(default: 0.5 0.8 0.9)")
    parser.add_argument("--no-plots", dest="plots", action="store_false",
                        help="print and write the tables only")
    parser.add_argument("--format", default="simple", help="tabulate table format, e.g. "
                        "github for Markdown (default: simple)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes drawing the figures (default: the CPU count); the "
                             "files are the same whatever the count")
    parser.set_defaults(handler=main)


def main(args) -> int:
    import matplotlib
    matplotlib.use("Agg")  # a command never opens a window
    from tabulate import tabulate

    from .. import study
    from ..api import UsageError
    from ..summary import ACCURACY_TARGETS

    targets = tuple(args.reach) if args.reach else ACCURACY_TARGETS
    if any(not 0 < target <= 1 for target in targets):
        raise UsageError("--reach takes accuracies as fractions in (0, 1], e.g. --reach 0.5 0.9")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1 (processes drawing figures)")
    result = study.analyse(args.roots, targets=targets, task=args.task, defense=args.defense,
                           attack=args.attack, momentum_at=args.momentum, f=args.f,
                           profile=args.profile)
    # the tables first: they are printed and written before any figure is drawn
    print(f"{len(result.runs)} runs from {', '.join(args.roots)}\n")
    for name, frame in result.tables.items():
        headers, rows = study.formatted(frame)
        print(f"{TITLES[name]}\n{tabulate(rows, headers=headers, tablefmt=args.format)}\n")
    written = study.write_tables(result, args.out)
    print(f"tables: {', '.join(map(str, written))}", flush=True)
    if not args.plots:
        return 0
    figures = study.drawings(result)
    jobs = max(1, min(args.jobs, len(figures)))
    print(f"drawing {len(figures)} figures into {args.out} "
          f"({jobs} process{'es' if jobs > 1 else ''})...", flush=True)
    start = time.monotonic()
    study.draw(result, args.out, jobs, figures)
    print(f"{len(result.figures)} figures ({time.monotonic() - start:.0f} s):")
    for path in result.figures:
        print(f"  {path}")
    return 0
