"""`reproduce`: the ICLR'21 paper's analysis from the stored `paper` results."""
from __future__ import annotations

from pathlib import Path

from ..api import UsageError

COMMAND = "python -m benchmark reproduce"


def register(commands) -> None:
    parser = commands.add_parser(
        "reproduce", help="write docs/reproduction.md: the ICLR'21 analysis from results/paper",
        description="From the stored results of the `paper` profile (run them with `python -m "
                    "benchmark run --profile paper --task mnist --task fashion-mnist`), write "
                    "the paper's analysis: per configuration the maximum top-1 accuracy with "
                    "momentum at the update and at the workers against the unattacked "
                    "baseline, the share of configurations where worker momentum recovers what "
                    "an attack costs (the paper's headline), variance-norm ratios and the "
                    "share of steps meeting each rule's bound. The same results give the "
                    "same bytes.")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--profile", default="paper", help="profile (default: paper)")
    parser.add_argument("--out", default="docs/reproduction.md",
                        help="Markdown file to write (default: docs/reproduction.md)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="accuracy points an attack must cost and worker momentum recover "
                             "(default: 0.20, the paper's 20 %%)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --out differs from what the results give")
    parser.set_defaults(handler=main)


def main(args) -> int:
    from benchmark import matrix
    from leaderboard import collect, reproduction

    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"no results folder {results}; give --results DIR")
    threshold = reproduction.PAPER_THRESHOLD if args.threshold is None else args.threshold
    if not 0 < threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1] (accuracy points), not {threshold}")
    profile = matrix.load_profile(args.profile)
    collection = collect.collect(results, profile)
    analysis = reproduction.analyse(collection.sound, threshold)
    out = Path(args.out)
    figures_folder = out.with_suffix("")
    figures = [(title, f"{figures_folder.name}/{name}") for title, name
               in _figures(collection.sound, figures_folder, args.check)]
    text = reproduction.markdown(analysis, COMMAND, figures)
    if args.check:
        missing = [path for _, path in figures if not (out.parent / path).is_file()]
        if missing:
            print(f"{out.parent / missing[0]} is missing: regenerate with `{COMMAND}`")
            return 1
        if not out.exists() or out.read_text() != text:
            print(f"{out} is not what `{COMMAND}` gives from {results}/: regenerate it")
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    share = analysis.share
    print(f"{out}: {analysis.runs} runs, {len(analysis.configurations)} configurations; "
          f"worker momentum recovers >= {threshold:.2f} in "
          + (f"{len(analysis.recovered)} of {len(analysis.attacked)} ({share:.0%})"
             if share is not None else "none yet (no attack costs that much)"))
    return 0


def _figures(results, folder: Path, check: bool) -> list[tuple[str, str]]:
    """Draws the figures into `folder`; with `check` only names them (PNG bytes depend on
    the matplotlib version, so the check compares the page, which names them)."""
    from leaderboard import reproduction_plots

    if check:
        return reproduction_plots.plan(results)
    return reproduction_plots.write(results, folder)
