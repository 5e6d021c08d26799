"""`kernels`: time every registered defense's kernel over the (n, f, d) sweep."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tabulate import tabulate

from .. import kernels, registry
from ..api import UsageError
from ..processes import set_threads
from ..timing import machine_info


def register(commands) -> None:
    parser = commands.add_parser(
        "kernels", help="micro-benchmark the defenses' kernels (CPU or CUDA)",
        description="Time each defense over an (n, f, d) sweep that holds the paper's shapes, "
                    "as medians and as ratios to the coordinate-wise mean and the Gram matrix "
                    "of the same input, measured in the same rounds. Writes "
                    "results/kernels/<device>.json (the leaderboard's speed table).")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--defense", action="append", metavar="NAME[:OPTIONS]",
                        help="a defense to time (repeatable; default: every registered one); "
                             "its records replace its old ones in the output file")
    parser.add_argument("--shape", action="append", metavar="N,F,D",
                        help="an (n, f, d) to time instead of the default sweep (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny smoke run (n=11, f=2, d=1000, two rounds); written only "
                             "with --output, never to results/kernels")
    parser.add_argument("--output", help="JSON file (default: results/kernels/<device>.json)")
    parser.add_argument("--rounds", type=int, help="timed rounds per case (default 7)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 1)")
    parser.add_argument("--case-timeout", type=float,
                        help="seconds before a case is stopped and skipped (default 300)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch and numpy's BLAS (default 1)")
    parser.add_argument("--clock", choices=kernels.CLOCKS, default="auto",
                        help="thread: CPU time of the measuring thread; wall: elapsed time; "
                             "auto (default): thread for one CPU thread, else wall")
    parser.set_defaults(handler=main)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        n, f, d = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--shape {text!r}: write N,F,D, e.g. --shape 51,24,79510") from None
    if n < 1 or f < 0 or d < 1 or f >= n:
        raise UsageError(f"--shape {text!r}: need n >= 1, 0 <= f < n and d >= 1")
    return n, f, d


def settings_from(args) -> kernels.Settings:
    settings = kernels.Settings(threads=args.threads, clock=args.clock)
    if args.quick:
        settings = dataclasses.replace(settings, rounds=2, min_rounds=1, warmup=1,
                                       case_timeout=120.0)
    for key in ("rounds", "warmup", "case_timeout"):
        value = getattr(args, key)
        if value is not None:
            if value < (1 if key == "rounds" else 0):
                raise UsageError(f"--{key.replace('_', '-')} must be positive, not {value}")
            settings = dataclasses.replace(settings, **{key: value})
    if settings.threads < 1:
        raise UsageError(f"--threads must be at least 1, not {settings.threads}")
    return dataclasses.replace(settings, min_rounds=min(settings.min_rounds, settings.rounds))


def _row(item: dict) -> list:
    if "reason" in item:
        return [item["defense"], item["n"], item["f"], item["d"], "skipped", "", "",
                item["reason"]]
    f = f"{item['f']} (of {item['f_requested']})" if "f_requested" in item else item["f"]
    target = ""
    if "target" in item:
        target = f"{item['target']}: {'met' if item['meets_target'] else 'MISSED'}"
    return [item["defense"], item["n"], f, item["d"], f"{item['median_ms']:.3f}",
            f"{item['ratio_to_mean']:.1f}", f"{item['ratio_to_gram']:.2f}", target]


HEADERS = ["defense", "n", "f", "d", "median ms", "x mean", "x gram", "target"]


def main(args) -> int:
    device = kernels.resolve_device(args.device)
    defenses = args.defense or registry.names("defense")
    for label in defenses:
        kernels.components_of(label)  # unknown names and bad options: UsageError
    shapes = ([_shape(text) for text in args.shape] if args.shape
              else kernels.QUICK_SHAPES if args.quick else kernels.SHAPES)
    settings = settings_from(args)
    set_threads(settings.threads)  # the shared-kernel timings run here
    output = Path(args.output) if args.output else None
    if output is None and not args.quick:
        output = Path("results") / "kernels" / f"{device.split(':')[0]}.json"

    cases, skipped = kernels.plan(defenses, shapes)
    print(f"{len(cases)} cases on {device}, {settings.threads} thread(s), "
          f"{settings.rounds} rounds (median), {kernels.clock_of(settings, device)} clock")
    records, failures = kernels.run_cases(
        cases, device, settings,
        progress=lambda item: print("  " + "  ".join(str(v) for v in _row(item)), flush=True))
    skipped += failures
    helpers = kernels.helper_records(shapes, device, settings) if not args.defense else []
    table = [_row(item) for item in sorted(records + skipped,
                                           key=lambda r: (r["defense"], r["d"], r["n"], r["f"]))]
    print(tabulate(table, headers=HEADERS))
    if helpers:
        print(tabulate([[h["kernel"], h["n"], h["d"], f"{h['median_ms']:.3f}",
                         f"{h['ratio_to_mean']:.1f}", f"{h['ratio_to_gram']:.2f}"]
                        for h in helpers],
                       headers=["shared kernel", "n", "d", "median ms", "x mean", "x gram"]))
    if output is None:
        print("quick run: nothing written (give --output to keep it)")
        return 0
    machine = machine_info(device, settings)
    for note in kernels.write_results(output, machine, settings, records, skipped, helpers,
                                      merge=bool(args.defense)):
        print(f"note: {note}")
    print(f"written to {output}")
    return 0
