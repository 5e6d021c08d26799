"""`verify`: re-run a random sample of stored cells and require identical results."""
from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from ..api import UsageError
from ._common import add_results_location


def register(commands) -> None:
    parser = commands.add_parser(
        "verify", help="re-run K random stored cells and require identical metrics",
        description="Re-run a seeded random sample of the stored results of a profile (with "
                    "the code in this tree) and compare what the re-run writes with what is "
                    "stored: eval.csv, the trace and the SHA-256 of metrics.csv recorded in "
                    "run.json (so metrics.csv itself need not be committed), the status and "
                    "the summary. Runs are deterministic on CPU with one thread; another CPU "
                    "model or library build may differ in the last bits. Exit 1 on a mismatch.")
    parser.add_argument("--sample", type=int, required=True, metavar="K",
                        help="how many cells to re-run")
    add_results_location(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.add_argument("--base", metavar="GIT_REF",
                        help="sample only results changed since this commit (a pull request's)")
    parser.set_defaults(handler=main)


def _candidates(root: Path, profile: str, base: str | None
                ) -> tuple[list[tuple[Path, dict]], int]:
    """(well-formed results of `profile` valid for today's code, how many are stale)."""
    from .. import behaviour, store
    from ..config import RunConfig
    from .validate import changed_folders

    folders = store.cell_folders(root / profile)
    if base:
        changed = set(changed_folders(root, base))
        folders = [folder for folder in folders if folder in changed]
    found, stale = [], 0
    for folder in folders:
        record = store.read_run(folder)
        if record is None or record["config"]["profile"] != profile:
            continue
        try:
            config = RunConfig.from_dict(record["config"])
            current = behaviour.of_config(config)
        except (TypeError, ValueError, UsageError):
            continue
        if behaviour.stale_reason(record, current):
            stale += 1
            continue
        found.append((folder, record))
    return found, stale


def compare(folder: Path, record: dict, rerun: Path, rerun_record: dict) -> list[str]:
    """Differences between a stored cell and its re-run (empty: identical)."""
    from .. import store

    problems = []
    for name in store.DATA_FILES:
        if not (rerun / name).exists():
            continue
        fresh = store.content_hash(rerun / name)
        if (folder / name).exists():
            stored, source = store.content_hash(folder / name), "the stored file"
        else:
            stored, source = record["files"].get(name), "the hash in run.json"
        if fresh != stored:
            problems.append(f"{name} differs from {source}")
    for key in ("status", "summary", "steps_done"):
        if record.get(key) != rerun_record.get(key):
            problems.append(f"{key} differs: stored {record.get(key)!r}, "
                            f"re-run {rerun_record.get(key)!r}")
    return problems


def main(args) -> int:
    from .. import store
    from ..cells import run_cell
    from ..processes import single_thread
    from ..config import RunConfig

    root = Path(args.results)
    if args.sample < 1:
        raise UsageError("--sample needs K >= 1 cells to re-run")
    if not root.is_dir():
        raise UsageError(f"no results folder {root}; give --results DIR")
    from leaderboard import BOARDS

    candidates, stale = [], 0
    for profile in [args.profile] if args.profile else BOARDS:
        found, outdated = _candidates(root, profile, args.base)
        candidates, stale = candidates + found, stale + outdated
    if not candidates:
        raise UsageError(f"no current {args.profile or ' or '.join(BOARDS)} results under "
                         f"{root} to verify"
                         + (f" ({stale} are stale: their behaviour versions changed)" if stale else ""))
    chosen = random.Random(args.seed).sample(candidates, min(args.sample, len(candidates)))
    single_thread()
    failures = 0
    for folder, record in sorted(chosen, key=lambda item: item[0].as_posix()):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
            config = RunConfig.from_dict(record["config"])
            result = run_cell(config, scratch, resume=False)
            problems = compare(folder, record, result.folder, store.read_run(result.folder))
        relative = folder.relative_to(root).as_posix()
        seconds = time.monotonic() - started
        if problems:
            failures += 1
            print(f"MISMATCH {relative} ({seconds:.1f} s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"identical {relative} ({seconds:.1f} s)")
    print(f"{len(chosen) - failures} of {len(chosen)} re-run cell(s) identical"
          + (f"; {stale} stale result(s) not sampled" if stale else ""))
    return 1 if failures else 0
