"""`profile-cell`: where the time of one whole cell goes, part by part, beside the floor
of its steps (one fused forward+backward pass over the honest workers' samples, timed in
the same process).

  start-up     this process's CPU time before the cell started (interpreter, imports,
               plugin discovery, compiled kernels warmed); a `run` pays it once per
               worker process, not per cell
  data         decoding the task's data set (once per process too: it is cached)
  build        the Simulation: model, generators, stages
  steps        every training step (the run's `steps`)
  evaluations  every test-set evaluation (step 0, then every eval_every steps)
  rows         writing metrics.csv and eval.csv row by row, as a cell does
  cell         build + steps + evaluations + rows: what each cell of a `run` costs

The floor is timed every K steps (--floor-every) and counted once per step; the run's
own random streams are not touched, so the steps are those of the real cell.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .. import engine, store
from ..api import UsageError
from ..cells import single_thread
from ..config import make_config
from ._common import add_cell_identity, add_run_settings, run_settings
from .profile_step import fused_baseline

PARTS = ("data", "build", "steps", "evaluations", "rows")


def register(commands) -> None:
    parser = commands.add_parser(
        "profile-cell", help="time one whole cell, part by part",
        description="Run one cell (without storing it) and print the CPU time of its parts: "
                    "start-up, data, build, steps, evaluations and the rows it writes, with "
                    "the steps' floor (a fused forward+backward pass a step) measured in "
                    "the same process. `profile-step` breaks one step down further.")
    add_cell_identity(parser)
    parser.add_argument("--floor-every", type=int, default=10, metavar="K",
                        help="time the fused forward+backward floor every K steps "
                             "(default 10; 0: not at all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_run_settings(parser)
    parser.set_defaults(handler=main)


def profile_cell(config, floor_every: int = 10, startup: float | None = None) -> dict:
    """Seconds per part (see the module's docstring) of one run of `config`, and the
    floor: the median fused forward+backward pass, times the number of steps. `startup`:
    the process's CPU time when the caller was ready to run, if it knows it."""
    thread = config.device == "cpu" and torch.get_num_threads() == 1

    def now() -> float:
        if config.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.thread_time() if thread else time.perf_counter()

    seconds = dict.fromkeys(PARTS, 0.0)
    start = now()
    engine.load_task_data(config.task, config.data_dir)
    seconds["data"] = now() - start
    start = now()
    sim = engine.Simulation(config)
    seconds["build"] = now() - start
    floor_pass = (fused_baseline(sim, torch.Generator().manual_seed(config.seed))
                  if floor_every else None)
    floors: list[float] = []
    last_evaluation: dict = {}
    step, evaluate = sim.step, sim.evaluate

    def timed(part, function):
        def call():
            begin = now()
            try:
                return function()
            finally:
                seconds[part] += now() - begin
        return call

    sim.step, sim.evaluate = timed("steps", step), timed("evaluations", evaluate)
    with tempfile.TemporaryDirectory() as scratch:
        metrics_log = store.CsvLog(Path(scratch) / "metrics.csv")
        eval_log = store.CsvLog(Path(scratch) / "eval.csv")

        def on_step(row):
            timed("rows", lambda: metrics_log(row))()
            if floor_pass is not None and (sim.step_index - 1) % floor_every == 0:
                rng = torch.get_rng_state()  # the model's random flips draw from it
                begin = now()
                floor_pass()
                floors.append(now() - begin)
                torch.set_rng_state(rng)

        def on_eval(row):
            timed("rows", lambda: eval_log(row))()
            last_evaluation.update(row)

        outcome = engine.run(config, on_step, on_eval, sim)
        metrics_log.close()
        eval_log.close()
    evaluations = config.steps // config.eval_every + 1 + bool(config.steps % config.eval_every)
    result = {"config": {key: getattr(config, key) for key in
                         ("task", "defense", "attack", "momentum_at", "n", "f", "batch_size",
                          "steps", "eval_every", "metrics", "device")},
              "status": outcome.status, "clock": "thread CPU time" if thread else "wall time",
              "startup_s": startup,
              "parts_s": seconds, "cell_s": sum(seconds[p] for p in PARTS[1:]),
              "evaluations": evaluations, "final_evaluation": last_evaluation}
    if floors:
        result["floor_pass_ms"] = 1e3 * statistics.median(floors)
        result["floor_steps_s"] = result["floor_pass_ms"] * config.steps / 1e3
    return result


def report(result: dict) -> str:
    c, parts = result["config"], result["parts_s"]
    cell, steps = result["cell_s"], c["steps"]
    lines = [f"{c['task']} / {c['defense']} / {c['attack']} / momentum at {c['momentum_at']}, "
             f"n={c['n']}, f={c['f']}, batch {c['batch_size']}, {steps} steps, "
             f"{result['evaluations']} evaluations, metrics {'on' if c['metrics'] else 'off'}, "
             f"{c['device']} ({result['clock']}; run {result['status']})",
             f"{'part':<12} {'s':>8} {'of cell':>8}"]
    if result["startup_s"] is not None:
        lines.append(f"{'start-up':<12} {result['startup_s']:8.2f} {'':>8}  once per process")
    for part in PARTS:
        note = ""
        if part == "steps":
            note = f"  {1e3 * parts[part] / steps:.1f} ms a step"
        elif part == "evaluations":
            note = f"  {1e3 * parts[part] / result['evaluations']:.1f} ms each"
        share = f"{parts[part] / cell:8.1%}" if part != "data" else f"{'':>8}"
        lines.append(f"{part:<12} {parts[part]:8.2f} {share}{note}"
                     + ("  once per process" if part == "data" else ""))
    lines.append(f"{'cell':<12} {cell:8.2f}")
    if "floor_pass_ms" in result:
        lines.append(f"floor: one fused forward+backward {result['floor_pass_ms']:.2f} ms a "
                     f"step, {result['floor_steps_s']:.2f} s over {steps} steps; steps / "
                     f"floor = {parts['steps'] / result['floor_steps_s']:.2f}, cell / floor = "
                     f"{cell / result['floor_steps_s']:.2f}")
    return "\n".join(lines)


def main(args) -> int:
    if args.floor_every < 0:
        raise UsageError("--floor-every must be 0 (no floor) or more")
    config = make_config(task=args.task, defense=args.defense, attack=args.attack,
                         momentum_at=args.momentum, f=args.f, seed=args.seed,
                         **run_settings(args))
    single_thread()  # as a cell's worker process is set up (compiled kernels warmed)
    result = profile_cell(config, args.floor_every, startup=time.process_time())
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0
