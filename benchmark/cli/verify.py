"""`verify`: re-run a random sample of stored cells and require identical results."""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import secrets
import tempfile
import time
from pathlib import Path

from ..api import UsageError
from ._common import add_defense_process, add_results_location, apply_defense_process


def _sample_size(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--sample takes a number of cells >= 1 or 'all', "
                                         f"not {text!r}")
    return value


def _number(accepted, meaning: str):
    """An argparse type: a float for which `accepted(value)` holds, else `meaning`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not accepted(value):
            raise argparse.ArgumentTypeError(f"{meaning}, not {text!r}")
        return value
    return parse


_tolerance = _number(lambda value: 0 <= value <= 1,
                     "--tolerance is an accuracy difference in [0, 1]")
_jitter = _number(lambda value: 0 < value <= 0.1,
                  "--jitter is a fraction of each Byzantine vector's RMS coordinate in "
                  "(0, 0.1], e.g. 0.001")


def register(commands) -> None:
    parser = commands.add_parser(
        "verify", help="re-run K random stored cells and require identical metrics",
        description="Re-run a seeded random sample of the stored results of a profile (with "
                    "the code in this tree) and compare what the re-run writes with what is "
                    "stored: eval.csv, the trace and the SHA-256 of metrics.csv recorded in "
                    "run.json (so metrics.csv itself need not be committed), the status and "
                    "the summary. Runs are deterministic on CPU with one thread; another CPU "
                    "model or library build may differ in the last bits (--tolerance). Each "
                    "cell re-runs in a process of its own, under the hard time limit; this "
                    "process never imports the plugins (a plugin cannot patch the comparison). "
                    "Exit 1 on a mismatch.")
    parser.add_argument("--sample", type=_sample_size, required=True, metavar="K|all",
                        help="how many cells to re-run, or all of those selected")
    add_results_location(parser)
    add_defense_process(parser)
    parser.add_argument("--keyed", action="store_true",
                        help="trusted re-run: the shuffle's and the defense's random streams "
                             "keyed by a fresh secret that is never written and never reaches "
                             "the defense's process, so a defense that predicts the shuffle "
                             "from the run's seed loses that knowledge. A rule whose output "
                             "depends on the order of the rows or on its random stream then "
                             "differs from the stored cell as another seed would (an order-"
                             "invariant, deterministic rule gives the same bytes): give "
                             "--tolerance, about the task's seed noise; status and steps must "
                             "match")
    parser.add_argument("--jitter", type=_jitter, metavar="J",
                        help="re-run with the Byzantine vectors jittered (RunConfig."
                             "attack_jitter = J, e.g. 0.001: Gaussian noise of J times each "
                             "vector's RMS coordinate), so that no two are bit-identical: a "
                             "defense that scores by recognising the attack's identical rows "
                             "loses that gain and fails the comparison, where a rule that "
                             "does not moves as another seed would. Needs --tolerance")
    parser.add_argument("--task", action="append", help="only this task's cells (repeatable)")
    parser.add_argument("--defense", action="append",
                        help="only this defense's cells, by its label as stored, e.g. median, "
                             "nnm+trmean (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.add_argument("--base", metavar="GIT_REF",
                        help="sample only results changed since this commit (a pull request's)")
    parser.add_argument("--tolerance", type=_tolerance, metavar="T",
                        help="accept a re-run whose files differ (another machine's last bits) "
                             "when its status and steps match and its final and best test "
                             "accuracy are each within T of the stored ones, e.g. 0.02; "
                             "default: byte-identical only")
    parser.set_defaults(handler=main)


def _selected(record: dict, tasks: list[str] | None, defenses: list[str] | None) -> bool:
    config = record["config"]
    return ((not tasks or config.get("task") in tasks)
            and (not defenses or config.get("defense") in defenses))


def _candidates(root: Path, profile: str, base: str | None, tasks=None, defenses=None
                ) -> tuple[list[tuple[Path, dict]], int]:
    """(well-formed results of `profile` valid for today's code, how many are stale). The
    plugins' versions come from a child process (benchmark.plugin_facts)."""
    from .. import behaviour, plugin_facts, store
    from ..config import RunConfig
    from .validate import changed_folders

    folders = store.cell_folders(root / profile)
    if base:
        changed = set(changed_folders(root, base))
        folders = [folder for folder in folders if folder in changed]
    loaded = []
    for folder in folders:
        record = store.read_run(folder)
        if (record is None or record["config"].get("profile") != profile
                or not _selected(record, tasks, defenses)):
            continue
        try:
            loaded.append((folder, record, RunConfig.from_dict(record["config"])))
        except (TypeError, ValueError):
            continue
    facts = plugin_facts.ask([], configs=[config for _, _, config in loaded])
    found, stale = [], 0
    for folder, record, config in loaded:
        try:
            current = facts.versions_of_config(config)
        except UsageError:
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


ACCURACIES = ("final_accuracy", "max_accuracy")


def accuracy_gap(record: dict, rerun_record: dict) -> float:
    """The larger of the final and best test accuracies' differences between a stored cell
    and its re-run; infinite if their status or steps differ or an accuracy is missing."""
    if any(record.get(key) != rerun_record.get(key) for key in ("status", "steps_done")):
        return math.inf
    gaps = []
    for key in ACCURACIES:
        stored = (record.get("summary") or {}).get(key)
        fresh = (rerun_record.get("summary") or {}).get(key)
        if stored is None or fresh is None:
            gaps.append(0.0 if stored is fresh else math.inf)
        else:
            gaps.append(abs(stored - fresh))
    return max(gaps)


def main(args) -> int:
    from .. import store
    from ..config import RunConfig
    from ..executors import run_guarded

    apply_defense_process(args)
    if args.keyed and args.in_process_defense:
        raise UsageError("--keyed keeps the key from the defense by running it in a process of "
                         "its own: drop --in-process-defense")
    if args.keyed and args.tolerance is None:
        raise UsageError("--keyed re-runs differ from the stored cells as another seed would: "
                         "give --tolerance T, e.g. --tolerance 0.05")
    if args.jitter is not None and args.tolerance is None:
        raise UsageError("--jitter re-runs differ from the stored cells as another seed "
                         "would: give --tolerance T, e.g. --tolerance 0.03")
    stream_key = secrets.token_bytes(32) if args.keyed else None
    root = Path(args.results)
    if not root.is_dir():
        raise UsageError(f"no results folder {root}; give --results DIR")
    from leaderboard import BOARDS

    candidates, stale = [], 0
    for profile in [args.profile] if args.profile else BOARDS:
        found, outdated = _candidates(root, profile, args.base, args.task, args.defense)
        candidates, stale = candidates + found, stale + outdated
    if not candidates:
        narrowed = "".join(f" --{name} {' '.join(values)}" for name, values
                           in (("task", args.task), ("defense", args.defense)) if values)
        raise UsageError(f"no current {args.profile or ' or '.join(BOARDS)} results under "
                         f"{root}{' matching' + narrowed if narrowed else ''} to verify"
                         + (f" ({stale} are stale: their behaviour versions changed)" if stale else ""))
    size = len(candidates) if args.sample is None else min(args.sample, len(candidates))
    chosen = random.Random(args.seed).sample(candidates, size)
    failures = close = 0
    largest_gap = 0.0
    for folder, record in sorted(chosen, key=lambda item: item[0].as_posix()):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
            config = RunConfig.from_dict(record["config"])
            if args.jitter is not None and not config.attack_jitter:
                config = dataclasses.replace(config, attack_jitter=args.jitter)
            result = run_guarded(config, scratch, resume=False, stream_key=stream_key)
            rerun = store.read_run(result.folder) if result.folder else None
            if rerun is None:
                problems = [f"the re-run stored nothing ({result.status}: {result.reason})"]
                gap = math.inf
            else:
                problems = compare(folder, record, result.folder, rerun)
                gap = accuracy_gap(record, rerun) if problems else 0.0
        relative = folder.relative_to(root).as_posix()
        seconds = time.monotonic() - started
        if problems and args.tolerance is not None and gap <= args.tolerance:
            close += 1
            largest_gap = max(largest_gap, gap)
            print(f"within tolerance {relative} ({seconds:.1f} s): accuracy gap {gap:.4g}")
        elif problems:
            failures += 1
            print(f"MISMATCH {relative} ({seconds:.1f} s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"identical {relative} ({seconds:.1f} s)")
    identical = len(chosen) - failures - close
    print(f"{identical} of {len(chosen)} re-run cell(s) identical"
          + (f", {close} within tolerance {args.tolerance:g} (largest accuracy gap "
             f"{largest_gap:.4g})" if close else "")
          + (f"; {stale} stale result(s) not sampled" if stale else ""))
    return 1 if failures else 0
