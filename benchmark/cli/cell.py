"""`cell`: one run, stored as one result folder."""
from __future__ import annotations

import argparse
import sys

from .. import store
from ..api import UsageError
from ..processes import single_thread
from ..config import make_config
from ..executors import prepare_results, run_guarded
from ._common import (add_cell_identity, add_defense_process, add_run_settings,
                      apply_defense_process, run_settings)


def register(commands) -> None:
    parser = commands.add_parser(
        "cell", help="run one configuration (one cell of the matrix)",
        description="Run one simulated Byzantine SGD training and store it under "
                    "RESULTS/<profile>/<task>/<defense>/<attack>/. Defaults come from the task. "
                    "Options follow a colon (krum:m=5); pre-aggregators a plus (nnm+krum). "
                    "The run has a time budget (--time-budget, default 3600 s): it fails past "
                    "it, and a step still running at the budget plus a grace is killed.")
    add_cell_identity(parser)
    parser.add_argument("--results", metavar="RESULTS",
                        help="results root (default: results)")
    parser.add_argument("--out", dest="old_out", metavar="RESULTS",
                        help=argparse.SUPPRESS)  # the name --results had before; deprecated
    parser.add_argument("--profile", default="adhoc", help="label of the folder level "
                        "under --results (default: adhoc)")
    parser.add_argument("--force", action="store_true",
                        help="run again (from step 0) even if an identical complete result "
                             "exists")
    long_runs = parser.add_argument_group("long runs")
    long_runs.add_argument("--checkpoint-every", type=int, metavar="K",
                           help="save the run's whole state every K steps, beside its result "
                                "folder; an interrupted run then continues from its last "
                                "checkpoint when started again (same files as in one go)")
    long_runs.add_argument("--resume", action="store_true",
                           help="continue the interrupted run of this configuration found in "
                                "--results up to --steps; an error if it has no checkpoint")
    long_runs.add_argument("--keep-checkpoint", action="store_true",
                           help="leave the final state in the result folder (checkpoint.pt)")
    long_runs.add_argument("--local-steps", type=int, metavar="K",
                           help="local SGD steps of each worker per communication round "
                                "(default 1; see README, Long runs)")
    add_run_settings(parser)
    add_defense_process(parser)
    parser.set_defaults(handler=main)


def _results_root(args) -> tuple[str, str]:
    """The results root and the flag that named it (--out: deprecated name of --results)."""
    if args.old_out is None:
        return args.results or "results", "--results"
    if args.results is not None and args.results != args.old_out:
        raise UsageError("--out is the old name of --results: give --results only")
    print("note: `cell --out` is deprecated, use --results (as `run` does)", file=sys.stderr)
    return args.old_out, "--out"


def main(args) -> int:
    apply_defense_process(args)
    if args.resume and args.force:
        raise UsageError("--resume continues a run and --force restarts it: give one of them")
    root, flag = _results_root(args)
    settings = run_settings(args)
    for key in ("checkpoint_every", "local_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    config = make_config(task=args.task, defense=args.defense, attack=args.attack,
                         momentum_at=args.momentum, f=args.f, seed=args.seed,
                         profile=args.profile, **settings)
    prepare_results(root, [config], flag)
    single_thread()
    result = run_guarded(config, root, resume=not args.force,
                         require_checkpoint=args.resume, keep_checkpoint=args.keep_checkpoint)
    summary = result.summary or {}
    accuracy = summary.get("final_accuracy")
    print(f"{result.status}: {config.task} / {config.defense} / {config.attack} / "
          f"momentum at {config.momentum_at}, n={config.n}, f={config.f}, seed={config.seed}")
    if result.status == "skipped":
        print("  an identical complete result exists (use --force to run again)")
    else:
        rate = config.steps / result.seconds if result.seconds else float("nan")
        print(f"  {result.seconds:.2f} s ({rate:.1f} steps/s including evaluation)")
    record = (store.read_run(result.folder) if result.folder else None) or {}
    if "resumed_from_step" in record and result.status != "skipped":
        print(f"  resumed from its checkpoint at step {record['resumed_from_step']}")
    if result.reason:
        print(f"  reason: {result.reason}")
    if accuracy is not None:
        print(f"  final test accuracy {accuracy:.4f}, best {summary['max_accuracy']:.4f}")
    if config.servers > 1 and summary.get("max_server_drift") is not None:
        print(f"  {config.servers} servers ({config.byzantine_servers} Byzantine, "
              f"{config.server_attack}), gather every {config.gather_every} steps: final "
              f"worst / median accuracy over correct servers "
              f"{summary['final_worst_accuracy']:.4f} / {summary['final_median_accuracy']:.4f}, "
              f"largest drift {summary['max_server_drift']:.3g} "
              f"({summary['max_server_drift_ratio']:.3g} of the mean model's norm)")
    print(f"  stored in {result.folder}" if result.folder else
          "  nothing stored: run the same command again to retry")
    return 0 if result.status in ("ok", "skipped", "diverged") else 1
