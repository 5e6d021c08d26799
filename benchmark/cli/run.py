"""`run`: the matrix slice of one defense, in parallel, resumable."""
from __future__ import annotations

import os
import time
from pathlib import Path
from collections import Counter

from tabulate import tabulate
from tqdm import tqdm

from .. import devices, matrix, store
from ..cells import CellResult
from ..config import RunConfig
from ..api import UsageError
from ..executors import (DEFAULT_TIME_BUDGET, POSTPONED, prepare_results, run_dask, run_local,
                         run_serial)
from ._common import (add_defense_process, add_run_settings, apply_defense_process, duration,
                      placement, run_settings)


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help="run a defense through a matrix profile (resumable)",
        description="Run every cell of a profile for one defense: the profile's tasks x "
                    "attacks x momentum placements x f values x seeds. Completed cells are "
                    "skipped, so rerunning an interrupted command resumes it. Cells whose "
                    "parameters the defense rejects (e.g. bulyan with n < 4f+3) are listed "
                    "as invalid and not run.")
    parser.add_argument("--defense", help="defense name[:options], e.g. median, krum:m=5, "
                        "nnm+trmean (default: every defense the profile lists, plus its "
                        "unattacked baseline)")
    parser.add_argument("--profile", default="quick",
                        help="matrix profile (default: quick); see `list profiles`")
    parser.add_argument("--task", action="append", help="only this task (repeatable)")
    parser.add_argument("--attack", action="append", help="only this attack (repeatable)")
    parser.add_argument("--momentum", type=placement, action="append",
                        help="only this placement (repeatable)")
    parser.add_argument("--f", type=int, action="append", help="only this f (repeatable)")
    parser.add_argument("--seed", type=int, action="append", help="only this seed (repeatable)")
    executor = parser.add_argument_group(
        "where cells run (default: local processes; every cell has a time budget, "
        f"--time-budget, default {DEFAULT_TIME_BUDGET:g} s)")
    executor.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                          help="local parallel processes, one thread each (default and "
                               "most: the CPU count); with 1, cells run one at a time")
    executor.add_argument("--runs-per-device", type=int, metavar="N",
                          help="with --device cuda: N concurrent cells on each visible GPU, "
                               "round-robin, instead of --jobs (CPU cells keep --jobs)")
    executor.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                          help="run on this Dask cluster (its workers need this checkout and "
                               "the datasets; results come back here)")
    executor.add_argument("--dask-workers", type=int, metavar="N",
                          help="start a local Dask cluster of N one-thread workers and run on it")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--budget", type=duration, metavar="DURATION",
                        help="start no cell after this much wall-clock time, e.g. 90m, 2h, "
                             "1h30m, 600 (seconds); running cells finish, the rest are "
                             "postponed: rerun the same command to continue (complete cells "
                             "are skipped)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    add_run_settings(parser)
    add_defense_process(parser)
    parser.set_defaults(handler=main)


def _row(result):
    summary = result.summary or {}
    accuracy = summary.get("final_accuracy")
    config = result.config
    return [config.task, config.attack, config.momentum_at, config.f, config.seed,
            result.status, "" if accuracy is None else f"{accuracy:.3f}",
            "" if summary.get("max_accuracy") is None else f"{summary['max_accuracy']:.3f}",
            (result.reason or "")[:60]]


def cap_jobs(args) -> None:
    """More processes than CPUs only slow each other down (and each holds a dataset)."""
    cpus = os.cpu_count() or 1
    if args.jobs > cpus:
        print(f"--jobs {args.jobs} capped at {cpus} (the CPU count)")
        args.jobs = cpus


def _where(args) -> str:
    if args.scheduler and args.dask_workers:
        raise UsageError("give either --scheduler (an existing Dask cluster) or --dask-workers "
                         "(a local one), not both")
    if args.runs_per_device is not None and (args.scheduler or args.dask_workers):
        raise UsageError("--runs-per-device packs local worker processes; on Dask, give "
                         "each worker its own GPU instead")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise UsageError("--dask-workers needs at least 1 worker")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1 (local processes, e.g. "
                         f"--jobs {os.cpu_count() or 1}, the CPU count)")
    if args.scheduler:
        if not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise UsageError(f"--scheduler {args.scheduler!r}: write it as tcp://HOST:PORT")
        return f"Dask cluster at {args.scheduler}"
    if args.dask_workers:
        return f"local Dask cluster of {args.dask_workers} worker(s)"
    cap_jobs(args)
    return f"{args.jobs} process(es)"


DETAILED_UP_TO = 120  # cells; larger matrices get one line per defense, task and f
DETAILED_INVALID = 12


def _stored(root, config) -> CellResult:
    """A cell complete before this command, as its stored record tells it."""
    folder = store.cell_dir(root, config)
    record = store.read_run(folder)
    return CellResult(config, folder, "skipped", record["reason"], record["summary"])


def execute(configs: list[RunConfig], root, counts: Counter, *, jobs: int = 1,
            deadline: float | None = None, scheduler: str | None = None,
            dask_workers: int | None = None, gpus=()) -> list[CellResult]:
    """Runs `configs` into the results root `root` with a progress bar, on a Dask cluster
    (`scheduler` or `dask_workers`), in worker processes pinned to `gpus`, in `jobs` local
    processes, or one at a time in this process; adds each cell's status to `counts`
    (shown beside the bar). A cell not started by `deadline` (time.time()) is postponed."""
    with tqdm(total=len(configs), unit="cell", dynamic_ncols=True) as bar:
        def on_done(result):
            counts[result.status] += 1
            bar.set_postfix(dict(counts), refresh=False)
            bar.update()
        if scheduler or dask_workers:
            return run_dask(configs, root, on_done, scheduler=scheduler, workers=dask_workers,
                            deadline=deadline)
        if any(gpu is not None for gpu in gpus):
            return run_local(configs, root, len(gpus), on_done, gpus=gpus, deadline=deadline)
        if jobs <= 1:
            return run_serial(configs, root, on_done, deadline=deadline)
        return run_local(configs, root, jobs, on_done, deadline=deadline)


def _print_overview(results, invalid) -> None:
    """Mean final accuracy over seeds: worst attack and clean, per placement."""
    groups: dict[tuple, dict] = {}
    for result in results:
        config = result.config
        accuracy = (result.summary or {}).get("final_accuracy") or 0.0  # failed runs: 0
        key = (config.task, config.defense, config.f)
        groups.setdefault(key, {}).setdefault((config.momentum_at, config.attack), []).append(
            accuracy)
    rows = []
    for (task, defense, f), cells in sorted(groups.items()):
        row = [task, defense, f]
        for momentum_at in ("update", "worker", "server"):
            means = {attack: sum(v) / len(v) for (where, attack), v in cells.items()
                     if where == momentum_at}
            attacked = {a: m for a, m in means.items() if a != "none"}
            worst = min(attacked, key=attacked.get) if attacked else None
            row.append(f"{attacked[worst]:.3f} ({worst})" if worst else "")
        rows.append(row)
    print(tabulate(rows, headers=["task", "defense", "f", "worst attack, update",
                                  "worst attack, worker", "worst attack, server"]))
    print(f"(mean final test accuracy over seeds; failed runs count 0; {len(invalid)} "
          "invalid cells not run, listed by --dry-run; `python -m benchmark study RESULTS` "
          "gives the details)")


def main(args) -> int:
    apply_defense_process(args)
    where = _where(args)  # bad executor options fail before anything is expanded
    profile = matrix.load_profile(args.profile)
    cells = matrix.expand(profile, args.defense, tasks=args.task, attacks=args.attack,
                          placements=args.momentum, f_values=args.f, seeds=args.seed,
                          overrides=run_settings(args))
    valid = [cell for cell in cells if cell.invalid is None]
    invalid = [cell for cell in cells if cell.invalid is not None]
    if args.dry_run:
        rows = [[*cell.label.values(), cell.invalid or ""] for cell in cells]
        headers = [*cells[0].label.keys(), "invalid because"] if cells else []
        print(tabulate(rows, headers=headers))
        print(f"\n{len(valid)} cells to run, {len(invalid)} invalid "
              f"(profile {profile.name}, defense {args.defense or 'all listed'})")
        return 0
    root = Path(args.results)
    done = [cell.config for cell in valid if store.is_complete(store.cell_dir(root, cell.config),
                                                               cell.config)]
    configs = [cell.config for cell in valid if cell.config not in done]
    prepare_results(root, [cell.config for cell in valid], "--results")
    device = devices.common_device(configs) if args.runs_per_device is not None else "cpu"
    gpus = devices.worker_devices(device, args.runs_per_device, args.jobs,
                                  devices.visible_gpus())
    if any(gpu is not None for gpu in gpus):
        where = (f"{len(gpus)} process(es), {args.runs_per_device} per GPU on "
                 f"{len(set(gpus))} GPU(s)")
    print(f"profile {profile.name}, defense {args.defense}: {len(valid)} cells ({len(done)} "
          f"already complete, {len(invalid)} invalid), {where}, "
          f"results in {root}/")
    deadline = time.time() + args.budget if args.budget is not None else None
    counts = Counter(skipped=len(done)) if done else Counter()
    results = execute(configs, args.results, counts, jobs=args.jobs, deadline=deadline,
                      scheduler=args.scheduler, dask_workers=args.dask_workers, gpus=gpus)
    results += [_stored(root, config) for config in done]
    results.sort(key=lambda r: (r.config.task, r.config.defense, r.config.attack,
                                r.config.momentum_at, r.config.f, r.config.seed))
    if len(results) <= DETAILED_UP_TO:
        print(tabulate([_row(r) for r in results],
                       headers=["task", "attack", "momentum", "f", "seed", "status", "final acc",
                                "best acc", "reason"]))
        for cell in invalid[:DETAILED_INVALID]:
            print(f"invalid: {cell.label}: {cell.invalid}")
        if len(invalid) > DETAILED_INVALID:
            print(f"... and {len(invalid) - DETAILED_INVALID} more invalid cells "
                  "(all of them: --dry-run)")
    else:
        _print_overview(results, invalid)
    print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    if counts[POSTPONED]:
        print(f"the budget of {args.budget:g} s ran out: {counts[POSTPONED]} cells postponed; "
              "rerun the same command to continue")
    return 1 if counts["failed"] else 0
