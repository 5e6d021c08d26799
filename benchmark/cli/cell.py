"""`cell`: one run, stored as one result folder."""
from __future__ import annotations

from .. import store
from ..api import UsageError
from ..cells import single_thread
from ..config import make_config
from ..executors import prepare_results, run_guarded
from ._common import add_cell_identity, add_run_settings, run_settings


def register(commands) -> None:
    parser = commands.add_parser(
        "cell", help="run one configuration (one cell of the matrix)",
        description="Run one simulated Byzantine SGD training and store it under "
                    "OUT/<profile>/<task>/<defense>/<attack>/. Defaults come from the task. "
                    "Options follow a colon (krum:m=5); pre-aggregators a plus (nnm+krum). "
                    "The run has a time budget (--time-budget, default 3600 s): it fails past "
                    "it, and a step still running at the budget plus a grace is killed.")
    add_cell_identity(parser)
    parser.add_argument("--out", default="results", help="results root (default: results)")
    parser.add_argument("--profile", default="adhoc", help="label of the folder level "
                        "under --out (default: adhoc)")
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
                                "--out up to --steps; an error if it has no checkpoint")
    long_runs.add_argument("--keep-checkpoint", action="store_true",
                           help="leave the final state in the result folder (checkpoint.pt)")
    long_runs.add_argument("--local-steps", type=int, metavar="K",
                           help="local SGD steps of each worker per communication round "
                                "(default 1; see README, Long runs)")
    add_run_settings(parser)
    parser.set_defaults(handler=main)


def main(args) -> int:
    if args.resume and args.force:
        raise UsageError("--resume continues a run and --force restarts it: give one of them")
    settings = run_settings(args)
    for key in ("checkpoint_every", "local_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    config = make_config(task=args.task, defense=args.defense, attack=args.attack,
                         momentum_at=args.momentum, f=args.f, seed=args.seed,
                         profile=args.profile, **settings)
    prepare_results(args.out, [config], "--out")
    single_thread()
    result = run_guarded(config, args.out, resume=not args.force,
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
    print(f"  stored in {result.folder}" if result.folder else
          "  nothing stored: run the same command again to retry")
    return 0 if result.status in ("ok", "skipped", "diverged") else 1
