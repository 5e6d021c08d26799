"""GAR kernel micro-benchmarks: what each registered rule costs, on CPU and CUDA.

Every rule runs over an (n, f, d) sweep that holds the paper's shapes. Each time is
also a ratio to two baselines measured in the same rounds on the same input: the
coordinate-wise mean (one read pass) and the Gram matrix x @ x.T (one matrix product).
Rounds interleave the rule with both baselines, so a change in the machine's load
touches all three alike; the median over rounds is kept. On CUDA, each call sits
between two torch.cuda.synchronize() and is timed by the wall clock. On CPU with one
thread the clock is, by default, the measuring thread's CPU time (user + system, so
page faults count): on a shared machine, wall time mostly measures the wait for a
core (5-10x on a loaded 2-core host), while CPU time measures the kernel. The wall
time is recorded beside it (`wall_ms`). Every timed CPU call starts with the input out of
the caches (`evict_caches`, untimed): otherwise a 16 MB input stays in a 32 MB
last-level cache between calls or not, depending on what ran before it, and one sweep
timed the same mean at 0.25 to 1.06 ms across cases.

The input imitates a step under attack: n − f rows of a common direction plus unit
Gaussian noise, and f identical rows (mean − 1.5σ, as the `little` attack sends), in a
seeded random order. Rules whose `check` rejects (n, f) run at the largest f it accepts.
A rule that uses the server's own data (`server_gradient`, FLTrust) gets one more row of
the common direction plus fresh noise as the server's update.

The cases run in a child process: one that exceeds the per-case timeout (an exact
search at large n) or crashes is stopped, recorded as skipped, and a fresh child
goes on with the rest.
Where another project's implementation of a rule is installed (benchmark.peers: ByzFL),
it runs in the same rounds too: `ratio_to_peer` is ours over theirs.
Results: results/kernels/<device>.json, records shaped
{defense, n, f, d, device, median_ms, ratio_to_mean, ratio_to_gram, ...} under
"results", with a "machine" object; the leaderboard's speed table reads them.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from . import peers, registry
from .api import UsageError
from .plugins import BoundDefense
from .processes import set_threads
from .timing import evict_caches, same_machine

SCHEMA = 1
# (n, f, d): MNIST/Fashion-MNIST MLP at both f of the paper, CIFAR CNN at both f,
# and the exact-MDA target shape.
SHAPES = [(51, 24, 79_510), (51, 12, 79_510), (25, 5, 1_310_922), (25, 11, 1_310_922),
          (30, 10, 2_048)]
QUICK_SHAPES = [(11, 2, 1_000)]
PAPER_SHAPE = (51, 79_510)  # (n, d) where the ratio targets apply
COORDINATE_WISE = {"median": 5.0, "trmean": 5.0, "phocas": 8.0, "meamed": 8.0}  # x mean
DISTANCE_BASED = ("krum", "multi-krum", "bulyan", "nnm")
MDA_TARGET = ("mda", 30, 10, 2_048, 50.0)  # exact MDA under 50 ms
STARTUP_TIMEOUT = 300.0  # seconds for a measuring process to import torch and the plugins


@dataclass(frozen=True)
class Settings:
    warmup: int = 1
    rounds: int = 7
    min_rounds: int = 3
    round_seconds: float = 20.0   # stop adding rounds past this (at least min_rounds)
    case_timeout: float = 300.0   # a case past this is stopped and skipped
    threads: int = 1
    seed: int = 0
    clock: str = "auto"           # auto | thread (CPU time of this thread) | wall


CLOCKS = ("auto", "thread", "wall")


def clock_of(settings: Settings, device: str) -> str:
    """The clock `auto` stands for: thread CPU time for one CPU thread, else wall time."""
    if settings.clock != "auto":
        return settings.clock
    return "thread" if torch.device(device).type == "cpu" and settings.threads == 1 else "wall"


@dataclass(frozen=True)
class Case:
    defense: str
    n: int
    f: int
    d: int
    f_requested: int


def target_of(defense: str, n: int, f: int, d: int) -> tuple[str, str, float] | None:
    """(what is compared, its description, limit) for the shapes the targets name."""
    rule = defense.split(":")[0]
    if (n, d) == PAPER_SHAPE and rule in COORDINATE_WISE:
        limit = COORDINATE_WISE[rule]
        return "ratio_to_mean", f"<= {limit:g}x mean", limit
    if (n, d) == PAPER_SHAPE and rule in DISTANCE_BASED:
        return "ratio_to_gram", "<= 2x gram", 2.0
    name, tn, tf, td, limit = MDA_TARGET
    if rule == name and (n, f, d) == (tn, tf, td):
        return "median_ms", f"< {limit:g} ms", limit
    return None


def components_of(label: str) -> list[registry.Component]:
    """registry.resolve, except that a lone pre-aggregator (nnm, bucketing) is allowed:
    its kernel is timed on its own."""
    name, _, option_text = label.partition(":")
    plugin = registry.discover("defense").get(name.strip())
    if "+" not in label and plugin is not None and plugin.spec is not None \
            and plugin.spec.preaggregator:
        options = registry.parse_options("defense", name, plugin.spec.options, option_text)
        return [registry.Component(plugin, options)]
    return registry.resolve("defense", label)


def check_reason(label: str, n: int, f: int) -> str | None:
    """Why `label` cannot run at (n, f), or None; the harness's own check."""
    return BoundDefense(label, f, torch.Generator(), components_of(label)).reason(n)


def plan(defenses: list[str], shapes: list[tuple[int, int, int]]):
    """(cases to run, skipped records). A rejected f falls back to the largest f accepted."""
    cases, skipped, planned = [], [], set()
    for label in defenses:
        for n, f, d in shapes:
            usable = next((g for g in range(f, -1, -1) if check_reason(label, n, g) is None),
                          None)
            if usable is None:
                skipped.append({"defense": label, "n": n, "f": f, "d": d,
                                "reason": check_reason(label, n, f)})
            elif (label, n, usable, d) not in planned and (
                    usable == f or (n, usable, d) not in shapes):  # each shape timed once
                planned.add((label, n, usable, d))
                cases.append(Case(label, n, usable, d, f))
            else:
                skipped.append({"defense": label, "n": n, "f": f, "d": d,
                                "reason": f"{check_reason(label, n, f)} (timed at f={usable})"})
    return cases, skipped


def kernel_function(label: str, f: int, seed: int,
                    server_gradient: torch.Tensor | None = None
                    ) -> Callable[[torch.Tensor], object]:
    """The rule as a function of the gradients: options applied, a generator for a
    randomized rule, one state dict kept across calls for a stateful one (its steady
    state), `server_gradient` for a rule that uses the server's data. A lone
    pre-aggregator is timed as it is; compositions go through the harness's BoundDefense
    (its validation costs one pass over a d-vector)."""
    components = components_of(label)
    bound = BoundDefense(label, f, torch.Generator().manual_seed(seed), components)
    bound.server_gradient = server_gradient
    return bound.aggregate if len(components) == 1 else bound


def attacked_input(n: int, f: int, d: int, seed: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    honest = torch.randn(d, generator=generator) + torch.randn(n - f, d, generator=generator)
    rows = [honest]
    if f:
        mean, spread = honest.mean(dim=0), honest.std(dim=0) if n - f > 1 else 0
        rows.append((mean - 1.5 * spread).expand(f, d))
    stacked = torch.cat(rows)
    return stacked[torch.randperm(n, generator=generator)].to(device)


def server_input(d: int, seed: int, device: str) -> torch.Tensor:
    """The server's update for a rule that uses its data: attacked_input's common
    direction (the same seed) plus noise of its own."""
    direction = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return (direction + torch.randn(d, generator=torch.Generator().manual_seed(seed + 1))
            ).to(device)


def synchronizer(device: str) -> Callable[[], None]:
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def interleaved_medians(functions: dict[str, Callable[[], object]], device: str,
                        settings: Settings) -> tuple[dict[str, float], dict[str, float], int]:
    """(median seconds by the settings' clock, median wall seconds, rounds) of each
    function, over rounds that run them all in turn."""
    sync = synchronizer(device)
    cold = evict_caches if torch.device(device).type == "cpu" else (lambda: None)
    clock = time.thread_time if clock_of(settings, device) == "thread" else time.perf_counter
    for _ in range(settings.warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    walls = {name: [] for name in functions}
    started = time.perf_counter()
    rounds = 0
    while rounds < settings.rounds:
        for name, function in functions.items():
            cold()
            sync()
            wall, start = time.perf_counter(), clock()
            function()
            sync()
            times[name].append(clock() - start)
            walls[name].append(time.perf_counter() - wall)
        rounds += 1
        if rounds >= settings.min_rounds and time.perf_counter() - started > settings.round_seconds:
            break
    return ({name: statistics.median(values) for name, values in times.items()},
            {name: statistics.median(values) for name, values in walls.items()}, rounds)


def measure(case: Case, device: str, settings: Settings) -> dict:
    """One record: the rule's median time and its ratios to the two baselines."""
    x = attacked_input(case.n, case.f_requested, case.d, settings.seed, device)
    rule = kernel_function(case.defense, case.f, settings.seed,
                           server_input(case.d, settings.seed, device))
    functions = {"mean": lambda: x.mean(dim=0), "gram": lambda: x @ x.T, "rule": lambda: rule(x)}
    peer = peers.peer_of(case.defense, case.f)
    if peer is not None:
        functions["peer"] = lambda: peer[1](x)
    medians, walls, rounds = interleaved_medians(functions, device, settings)
    record = {"defense": case.defense, "n": case.n, "f": case.f, "d": case.d,
              "device": torch.device(device).type, "median_ms": 1e3 * medians["rule"],
              "ratio_to_mean": medians["rule"] / medians["mean"],
              "ratio_to_gram": medians["rule"] / medians["gram"],
              "mean_ms": 1e3 * medians["mean"], "gram_ms": 1e3 * medians["gram"],
              "wall_ms": 1e3 * walls["rule"], "clock": clock_of(settings, device),
              "rounds": rounds, "dtype": str(x.dtype).removeprefix("torch.")}
    if case.f != case.f_requested:
        record["f_requested"] = case.f_requested
    if peer is not None:
        record.update(peer=peer[0], peer_ms=1e3 * medians["peer"],
                      ratio_to_peer=medians["rule"] / medians["peer"],
                      peer_agrees=peers.agrees(rule(x), peer[1](x)))
    target = target_of(case.defense, case.n, case.f, case.d)
    if target is not None:
        field, text, limit = target
        record["target"] = text
        record["meets_target"] = bool(record[field] <= limit if field != "median_ms"
                                      else record[field] < limit)
    return record


def helper_records(shapes, device: str, settings: Settings) -> list[dict]:
    """The shared kernels of benchmark.api, timed like the rules (where time goes inside
    the distance-based and coordinate-wise rules)."""
    from .api import coordinate_median, pairwise_sq_distances, sorted_coordinates
    helpers = {"pairwise_sq_distances": pairwise_sq_distances,
               "sorted_coordinates": sorted_coordinates, "coordinate_median": coordinate_median}
    records = []
    for n, f, d in sorted({(n, 0, d) for n, _, d in shapes}):
        x = attacked_input(n, 0, d, settings.seed, device)
        functions = {"mean": lambda: x.mean(dim=0), "gram": lambda: x @ x.T}
        functions.update({name: (lambda h=h: h(x)) for name, h in helpers.items()})
        medians, _, rounds = interleaved_medians(functions, device, settings)
        for name in helpers:
            records.append({"kernel": name, "n": n, "d": d, "device": torch.device(device).type,
                            "median_ms": 1e3 * medians[name],
                            "ratio_to_mean": medians[name] / medians["mean"],
                            "ratio_to_gram": medians[name] / medians["gram"],
                            "rounds": rounds})
    return records


def resolve_device(device: str) -> str:
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError("CUDA is not available on this machine (torch "
                         f"{torch.__version__}); run with --device cpu")
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r}: choose cpu or cuda[:i]")
    return device


def write_results(path: Path, machine: dict, settings: Settings, records: list[dict],
                  skipped: list[dict], helpers: list[dict], merge: bool) -> list[str]:
    """Writes the JSON file; with `merge`, records of other defenses already in a file
    from the same machine are kept. Returns notes for the user."""
    notes = []
    if merge and path.exists():
        old = json.loads(path.read_text())
        if same_machine(old.get("machine", {}), machine):
            measured = {r["defense"] for r in records} | {s["defense"] for s in skipped}
            records = [r for r in old.get("results", []) if r["defense"] not in measured] + records
            skipped = [s for s in old.get("skipped", []) if s["defense"] not in measured] + skipped
            helpers = helpers or old.get("helpers", [])
        else:
            notes.append(f"{path} came from another machine or library set: replaced")
    document = {"schema": SCHEMA, "machine": machine, "settings": asdict(settings),
                "results": sorted(records, key=lambda r: (r["defense"], r["d"], r["n"], r["f"])),
                "skipped": skipped, "helpers": helpers}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n")
    temporary.replace(path)
    return notes


def _child(cases: list[Case], device: str, settings: Settings, connection, parent: int) -> None:
    set_threads(settings.threads)
    peers.load()  # a peer library's imports count against start-up, not against a case
    connection.send(("ready",))
    for index, case in enumerate(cases):
        if os.getppid() != parent:  # the parent was killed: stop quietly
            return
        connection.send(("start", index))
        try:
            connection.send(("record", index, measure(case, device, settings)))
        except Exception as error:  # a broken rule is reported, the sweep goes on
            connection.send(("error", index, f"{type(error).__name__}: {error}"))
    connection.close()


def run_cases(cases: list[Case], device: str, settings: Settings,
              progress: Callable[[dict], None] = lambda item: None):
    """(records, skipped) for `cases`, measured in child processes (see module docstring)."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot live through a fork
    records, skipped, pending = [], [], list(cases)
    while pending:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(pending, device, settings, sender, os.getpid()),
                                  daemon=True)
        process.start()
        sender.close()
        current, finished, started = 0, 0, False
        while finished < len(pending):
            reason = None
            if not receiver.poll(settings.case_timeout if started
                                 else max(settings.case_timeout, STARTUP_TIMEOUT)):
                reason = (f"timed out after {settings.case_timeout:g} s" if started
                          else "the measuring process did not start")
            else:
                try:
                    message = receiver.recv()
                except EOFError:
                    process.join(5)
                    reason = f"the measuring process died (exit code {process.exitcode})"
            if reason is None and message[0] == "ready":
                started = True
                continue
            if reason is None and message[0] == "start":
                current = message[1]
                continue
            if reason is None and message[0] == "record":
                records.append(message[2])
                progress(message[2])
                finished += 1
                continue
            case = pending[current]
            item = {"defense": case.defense, "n": case.n, "f": case.f, "d": case.d,
                    "reason": reason or message[2]}
            skipped.append(item)
            progress(item)
            finished += 1
            if reason is not None:  # the child is gone or stuck: restart after this case
                break
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
        pending = pending[current + 1:] if finished < len(pending) else []
    return records, skipped
