"""`profile-step`: where the time of one simulated step goes.

The stages are timed from outside the step: `Simulation.instrument` hands the methods of
its stages (benchmark.stages), its bound defense and attack and the metrics row to timers,
on the instance only, so the step itself carries no timing code. Exclusive times, median over the
timed steps:

  gradients  honest workers' gradients, l2 and clipping (HonestWorkers.gradients); with a
             rule that uses server data, the server's update on its root set too
  momentum   worker or server momentum (HonestWorkers.submissions)
  attack     the attack plugin's own work, including any defense probes it makes (the
             checks of what it returns count in `other`)
  shuffle    the seeded shuffle (rows copied into the defense's input) and the
             comparison showing that neither attack nor defense wrote to what it got
             (Channel.shuffle_honest, and Channel.aggregate minus the defense)
  defense    the rule itself, with its output validation (every correct server's)
  update     update momentum and the parameter step (Server.apply_update)
  servers    with replicated servers only: pulls, gathers, the server attack and the
             drift (ReplicatedServers.pull, gather, drift)
  metrics    the per-step metrics row (StepMetrics.row)
  other      the rest of Simulation.step (loss and divergence checks, θ distance)

The harness's own work is the step less the gradients, the attack and the defense: what
the harness adds around the model and the two plugins (shuffle and guards, momentum,
metrics, update, the rest).

With the baseline on (default), one fused forward+backward pass of the model over
as many samples as the honest workers draw in a step (h × batch) is timed in the
same process, interleaved with the steps, and the step is reported as a ratio to it.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from collections import defaultdict

import torch

from ..api import UsageError
from ..cells import single_thread
from ..config import make_config
from ..engine import Simulation, load_task_data
from ._common import add_cell_identity, add_run_settings, run_settings

STAGES = ("gradients", "momentum", "attack", "shuffle", "defense", "update", "metrics",
          "other")
NOT_THE_HARNESS = ("gradients", "attack", "defense")  # the model's and the plugins' work
REPLICATED_STAGES = STAGES[:6] + ("servers",) + STAGES[6:]


def register(commands) -> None:
    parser = commands.add_parser(
        "profile-step", help="time one training step, stage by stage",
        description="Run a few steps of one configuration and print the median time of "
                    "each stage (gradients, momentum, attack, shuffle, defense, update, "
                    "metrics), and the step as a ratio to one fused forward+backward pass "
                    "over the honest workers' samples.")
    add_cell_identity(parser)
    parser.add_argument("--repeat", type=int, default=10, metavar="K",
                        help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the fused forward+backward baseline")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_run_settings(parser)
    parser.set_defaults(handler=main)


class _Clock:
    """Accumulates time per stage. With one CPU thread it reads the thread's CPU time
    (on a shared machine wall time mostly measures the wait for a core); otherwise wall
    time, waiting for the device at each edge on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.thread = device.type == "cpu" and torch.get_num_threads() == 1
        self.name = "thread CPU time" if self.thread else "wall time"
        self.current: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.thread_time() if self.thread else time.perf_counter()

    def timed(self, label: str, function):
        def call(*args, **kwargs):
            start = self.now()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[label] += self.now() - start
        return call


class _Timed:
    """Stands in for a stage method, the bound defense or the attack: times calls, forwards
    everything else (so an attack's probes of the defense go through untimed, counted in
    `attack`)."""

    def __init__(self, inner, clock: _Clock, label: str):
        self._inner = inner
        self._call = clock.timed(label, inner)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def instrument(sim: Simulation) -> _Clock:
    """Times the stages of `sim` through its hook (instance attributes only)."""
    clock = _Clock(sim.device)
    sim.instrument(lambda label, target: _Timed(target, clock, label))
    return clock


def exclusive(times: dict[str, float], total: float, stages=STAGES) -> dict[str, float]:
    """Per-stage exclusive times from the wrapped (possibly nested) ones."""
    parts = {stage: times.get(stage, 0.0) for stage in stages if stage != "other"}
    parts["shuffle"] = times.get("aggregate", 0.0) - parts["defense"]
    parts["other"] = total - sum(parts.values())
    return parts


def fused_baseline(sim: Simulation, generator: torch.Generator):
    """A function running one forward+backward of a copy of the model (same θ) over
    h × batch training samples, drawn without touching the run's random streams."""
    model = copy.deepcopy(sim.functions.model).train()
    torch.nn.utils.vector_to_parameters(sim.theta.detach(), model.parameters())
    parameters = list(model.parameters())
    data = load_task_data(sim.config.task, sim.config.data_dir)
    count = sim.honest_count * sim.config.batch_size
    indices = torch.randint(len(data.train_targets), (count,), generator=generator)
    inputs = data.train_inputs[indices].to(sim.device)
    targets = data.train_targets[indices].to(sim.device)
    loss_of = sim.functions.loss

    def forward_backward():
        loss = loss_of(model(inputs), targets)
        return torch.autograd.grad(loss, parameters)
    return forward_backward


def profile(config, repeat: int = 10, warmup: int = 3, baseline: bool = True) -> dict:
    """Median stage times (ms) over `repeat` steps after `warmup` steps, the step's median
    and, with `baseline`, the fused forward+backward median and the ratio between them."""
    return profile_simulation(Simulation(config), repeat, warmup, baseline)


def profile_simulation(sim: Simulation, repeat: int = 10, warmup: int = 3,
                       baseline: bool = True) -> dict:
    """`profile` for a Simulation built by the caller (e.g. with a stage replaced)."""
    config = sim.config
    for _ in range(warmup):
        sim.step()
    clock = instrument(sim)
    forward_backward = (fused_baseline(sim, torch.Generator().manual_seed(config.seed))
                        if baseline else None)
    if forward_backward is not None:
        forward_backward()  # warm-up
    samples, totals, fused = defaultdict(list), [], []
    stages = STAGES if sim.replicas is None else REPLICATED_STAGES
    for _ in range(repeat):
        clock.current.clear()
        start = clock.now()
        sim.step()
        total = clock.now() - start
        totals.append(total)
        parts = exclusive(clock.current, total, stages)
        for stage, seconds in parts.items():
            samples[stage].append(seconds)
        samples["harness"].append(total - sum(parts[stage] for stage in NOT_THE_HARNESS))
        if forward_backward is not None:
            start = clock.now()
            forward_backward()
            fused.append(clock.now() - start)
    result = {"config": {k: config.to_dict()[k] for k in
                         ("task", "defense", "attack", "momentum_at", "n", "f", "batch_size",
                          "metrics", "device", "servers")} | {"gradients": sim.functions.method},
              "threads": torch.get_num_threads(), "clock": clock.name, "steps_timed": repeat,
              "stages_ms": {stage: 1e3 * statistics.median(samples[stage]) for stage in stages},
              "step_ms": 1e3 * statistics.median(totals),
              "harness_ms": 1e3 * statistics.median(samples["harness"])}
    if fused:
        floor = result["fused_forward_backward_ms"] = 1e3 * statistics.median(fused)
        result["samples"] = sim.honest_count * config.batch_size
        result["ratio_to_fused"] = result["step_ms"] / floor
        result["gradients_to_fused"] = result["stages_ms"]["gradients"] / floor
        result["harness_to_fused"] = result["harness_ms"] / floor
    return result


def report(result: dict) -> str:
    c = result["config"]
    lines = [f"{c['task']} / {c['defense']} / {c['attack']} / momentum at {c['momentum_at']}, "
             f"n={c['n']}, f={c['f']}, batch {c['batch_size']}, metrics "
             f"{'on' if c['metrics'] else 'off'}, gradients by {c['gradients']}, "
             f"{c['device']}, {result['threads']} thread(s); median {result['clock']} of "
             f"{result['steps_timed']} steps",
             f"{'stage':<10} {'ms':>9} {'share':>6}"]
    step = result["step_ms"]
    for stage, ms in result["stages_ms"].items():
        lines.append(f"{stage:<10} {ms:9.2f} {ms / step:6.1%}")
    lines.append(f"{'step':<10} {step:9.2f}")
    lines.append(f"harness's own work (step - gradients - attack - defense): "
                 f"{result['harness_ms']:.2f} ms")
    if "ratio_to_fused" in result:
        lines.append(f"one fused forward+backward over {result['samples']} samples: "
                     f"{result['fused_forward_backward_ms']:.2f} ms; step / fused = "
                     f"{result['ratio_to_fused']:.2f}, gradients / fused = "
                     f"{result['gradients_to_fused']:.2f}, own work / fused = "
                     f"{result['harness_to_fused']:.2f}")
    lines.append("(stage medians are taken separately, so they need not add up to the step's)")
    return "\n".join(lines)


def main(args) -> int:
    if args.repeat < 1 or args.warmup < 0:
        raise UsageError("--repeat must be at least 1 and --warmup at least 0")
    if args.steps is not None:
        raise UsageError("profile-step runs --warmup then --repeat steps; drop --steps")
    config = make_config(task=args.task, defense=args.defense, attack=args.attack,
                         momentum_at=args.momentum, f=args.f, seed=args.seed,
                         **{**run_settings(args), "steps": args.warmup + args.repeat})
    single_thread()
    result = profile(config, repeat=args.repeat, warmup=args.warmup, baseline=args.baseline)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0
