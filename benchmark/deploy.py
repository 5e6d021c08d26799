"""The replicated-server protocol on real processes: torch.distributed with gloo over
loopback, one process per server and per worker (`python -m benchmark deploy`).

Every exchange is an all_gather of one d-vector per process (the simplest collective gloo
runs everywhere; each process keeps the rows meant for it):
  pull     servers contribute their model; each worker applies the pull rule to the
           n_ps models (the one model, with a single server) and computes its gradient,
           clips it and applies worker momentum;
  push     workers contribute their submission; each correct server aggregates them with
           the defense and updates its model (its own momentum and defense state);
  gather   every T steps (n_ps > 1), servers contribute their model again and each correct
           server takes the gather rule of the n_ps models.
A Byzantine server crafts the server attack from the correct models of the exchange
before and sends each recipient its own model with a scatter right after the all_gather
(so an equivocating attack tells different recipients different things, as in the
simulation); a silent one sends nothing. All
workers are honest here; the defense is still told f. Workers draw their batches from the
simulation's sampler and send what its honest workers send, so a deployment follows the
simulation of the same config with attack `none` (up to floating-point summation order:
gradients one worker at a time, rows unshuffled). The parent process watches every
process: one that dies, or a run where no process reports progress for `timeout`
seconds, stops all of them with an error naming the process.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import torch

from .config import RunConfig


class DeployError(Exception):
    """A process of the deployment died or stopped responding; the message says which."""


@dataclass(frozen=True)
class Fault:
    """A failure to inject (tests): `kind` kill or hang, at `rank`, before step `step`."""
    kind: str
    rank: int
    step: int

    @classmethod
    def parse(cls, text: str) -> "Fault":
        kind, rank, step = text.split(":")
        return cls(kind, int(rank), int(step))


def role(config: RunConfig, rank: int) -> str:
    if rank < config.servers:
        correct = config.servers - _byzantine_servers(config)
        return f"server {rank}" + ("" if rank < correct else " (Byzantine)")
    return f"worker {rank - config.servers}"


def _byzantine_servers(config: RunConfig) -> int:
    from . import registry
    (attack,) = registry.resolve("server_attack", config.server_attack)
    return 0 if attack.spec.clean else config.byzantine_servers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(rank: int, world: int, port: int, config: RunConfig, warmup: int,
             timeout: float, fault: Fault | None, reports) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout + 60))
    reports.put(("ready", rank, None))
    try:
        _protocol(rank, world, config, warmup, fault, reports, dist)
    except Exception as error:  # told to the parent, which names the process that failed first
        reports.put(("error", rank, f"{type(error).__name__}: {error}"))
        os._exit(1)
    dist.destroy_process_group()


def _protocol(rank, world, config, warmup, fault, reports, dist) -> None:
    from . import registry
    from .engine import load_task_data, stream_seed
    from .gradients import ModelFunctions
    from .plugins import BoundDefense
    from .sampling import make_sampler
    from .stages.adversary import BoundServerAttack
    from .stages.server import Server
    from .stages.workers import HonestWorkers

    def generator(stream, index=0):
        return torch.Generator().manual_seed(stream_seed(config.seed, stream, index))

    task = registry.lookup("task", config.task).spec
    data = load_task_data(config.task, config.data_dir)
    torch.manual_seed(stream_seed(config.seed, "model"))
    functions = ModelFunctions(task.model(), task.loss, config.gradients)
    theta = functions.initial_parameters()
    d, servers = functions.dimension, config.servers
    server_attack = BoundServerAttack(config.server_attack, config.byzantine_servers,
                                      generator("server_attack"))
    correct = servers - server_attack.f
    is_server, is_correct = rank < servers, rank < correct
    server = Server(config, theta.clone(), BoundDefense(config.defense, config.f,
                                                        generator("servers", 2 * rank)),
                    torch.device("cpu")) if is_correct else None
    pull_rule = BoundDefense(config.pull_rule, config.byzantine_servers, generator("model_rules"))
    gather_rule = BoundDefense(config.gather_rule, config.byzantine_servers,
                               generator("model_rules", 1))
    # a worker draws what the simulation's sampler gives all n workers and keeps its own
    # row, and sends what the simulation's honest workers send (benchmark.stages.workers)
    sampler = make_sampler(config, data.train_targets, generator("data"))
    sender = HonestWorkers(config, data, functions, sampler, 1, torch.device("cpu"))
    last_correct = theta.unsqueeze(0).repeat(correct, 1)  # what a Byzantine server saw last

    exchanges = 0

    def exchange(vector):
        nonlocal exchanges
        exchanges += 1
        reports.put(("exchange", rank, exchanges))  # a process missing from one is the hung one
        rows = [torch.empty(d) for _ in range(world)]
        dist.all_gather(rows, vector.contiguous())
        return torch.stack(rows)

    def byzantine_rows(pull: bool) -> list[torch.Tensor]:
        """What each Byzantine server sends this process in a pull (to the workers) or a
        gather (to the correct servers): one scatter from each Byzantine server, which
        every process joins; [] for a process that is not a recipient."""
        recipients = config.n if pull else correct
        sent = server_attack(last_correct, recipients) if not is_correct and is_server else None
        received = []
        for byzantine in range(correct, servers):
            mine, scattered = torch.empty(d), None
            if rank == byzantine:
                own = sent[byzantine - correct]
                rows = [own] * recipients if own.dim() == 1 else list(own)
                scattered = [torch.zeros(d)] * world
                for recipient in range(world):
                    position = recipient_index(recipient, pull)
                    if position is not None:
                        scattered[recipient] = rows[position].contiguous()
            dist.scatter(mine, scattered, src=byzantine)
            received.append(mine)
        return received if recipient_index(rank, pull) is not None else []

    def recipient_index(process: int, pull: bool) -> int | None:
        if pull:  # the workers
            return process - servers if process >= servers else None
        return process if process < correct else None  # the correct servers

    def models_received(pull: bool):
        """The models this process gets in a pull (sent to the workers) or a gather (to the
        correct servers): the correct servers' and the Byzantine ones'."""
        nonlocal last_correct
        rows = exchange(server.theta if is_correct else torch.zeros(d))[:correct]
        byzantine = byzantine_rows(pull) if server_attack.sends_models else []
        last_correct = rows
        return torch.stack([*rows, *byzantine]) if byzantine else rows

    started, first_pull = None, None
    for step in range(config.steps):
        if fault is not None and fault.rank == rank and fault.step == step:
            if fault.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10 ** 6)
        if step == warmup:
            started = time.perf_counter()
        models = models_received(pull=True)
        submission = torch.zeros(d)
        if not is_server:
            model = models[0] if servers == 1 else pull_rule(models)[0]
            if first_pull is None:
                first_pull = model.numpy().copy()  # by value: the process may exit first
            index = sampler.next_batches(config.n)[rank - servers]
            gradient, _ = functions.worker_gradients(
                model, data.train_inputs[index][None], data.train_targets[index][None],
                l2=config.l2)
            if config.clip is not None:
                gradient.mul_((config.clip / gradient.norm(dim=1, keepdim=True)).clamp_(max=1.0))
            submission = sender.submissions(gradient, None)[0]
        rows = exchange(submission)[servers:]
        if is_correct:
            server.apply_update(server.defense(rows)[0], config.lr_at(step))
        if servers > 1 and (step + 1) % config.gather_every == 0:
            models = models_received(pull=False)
            if is_correct:
                server.theta = gather_rule(models)[0]
        reports.put(("step", rank, step))
    seconds = time.perf_counter() - started if started is not None else float("nan")
    accuracy = parameters = None
    if rank == 0:
        accuracy, _ = functions.evaluate(server.theta, data.test_inputs, data.test_targets)
        parameters = server.theta.numpy().copy()  # by value, not a shared-memory handle
    reports.put(("done", rank, (config.steps - warmup, seconds, accuracy, parameters,
                                first_pull)))


def _failure(config, processes, failed, progress, errors) -> str:
    """Names the process that failed first: one killed by a signal, else the first to
    report an error, else any that exited."""
    killed = [rank for rank in failed if processes[rank].exitcode < 0]
    rank = killed[0] if killed else next(iter(errors), failed[0])
    code = processes[rank].exitcode
    how = (f"was killed by signal {-code}" if code is not None and code < 0
           else f"failed ({errors[rank]})" if rank in errors else f"exited with code {code}")
    return (f"process {rank} ({role(config, rank)}) {how} (steps it reported done: "
            f"{progress[rank] + 1} of {config.steps}); the deployment was stopped")


def run(config: RunConfig, warmup: int = 2, timeout: float = 60.0,
        fault: Fault | None = None) -> dict:
    """Runs `config` on n_ps + n processes; returns steps/s measured at server 0 after
    `warmup` steps, server 0's final test accuracy and its final parameters. DeployError if a process dies or
    no process reports progress for `timeout` seconds."""
    from . import registry
    from .engine import load_task_data
    world = config.servers + config.n
    # forked processes inherit the imports and the data (a spawned one takes seconds to
    # import torch and the plugins)
    load_task_data(config.task, config.data_dir)
    for kind in ("task", "defense", "server_attack"):
        registry.discover(kind)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    reports = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_process, daemon=True,
                                 args=(rank, world, port, config, warmup, timeout, fault,
                                       reports)) for rank in range(world)]
    for process in processes:
        process.start()
    progress, results, ready = [-1] * world, {}, 0
    entered, errors = [0] * world, {}

    def note(kind, rank, value):
        if kind == "step":
            progress[rank] = value
        elif kind == "exchange":
            entered[rank] = value
        elif kind == "ready":
            return 1
        elif kind == "error":
            errors.setdefault(rank, value)
        else:
            results[rank] = value
        return 0

    def drain():
        nonlocal ready
        while True:
            try:
                ready += note(*reports.get(timeout=0.5))
            except queue.Empty:
                return

    startup = max(timeout, 120.0)  # time for every process to start and connect
    last_news = time.monotonic()
    try:
        while len(results) < world:
            try:
                ready += note(*reports.get(timeout=0.2))
                last_news = time.monotonic()
                continue
            except queue.Empty:
                pass
            failed = [rank for rank, process in enumerate(processes)
                      if process.exitcode not in (None, 0)]
            if failed:
                drain()
                raise DeployError(_failure(config, processes, failed, progress, errors))
            if time.monotonic() - last_news > (timeout if ready == world else startup):
                if ready < world:
                    raise DeployError(f"only {ready} of {world} processes started and "
                                      f"connected within {startup:g} s")
                drain()
                behind = min(entered[rank] for rank in range(world) if rank not in results)
                stuck = [f"{rank} ({role(config, rank)})" for rank in range(world)
                         if entered[rank] == behind and rank not in results]
                raise DeployError(f"no progress for {timeout:g} s: process(es) "
                                  f"{', '.join(stuck)} hung (steps done: "
                                  f"{progress[int(stuck[0].split()[0])] + 1} of {config.steps})"
                                  " while the others waited for them; the deployment was "
                                  "stopped")
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(timeout=10)
    steps, seconds, accuracy, parameters, _ = results[0]
    parameters = torch.from_numpy(parameters) if parameters is not None else None
    return {"processes": world, "steps_timed": steps, "seconds": seconds,
            "steps_per_second": steps / seconds if seconds > 0 else float("nan"),
            "accuracy": accuracy, "parameters": parameters,
            "first_pulls": torch.stack([torch.from_numpy(results[rank][4])
                                        for rank in range(config.servers, world)])}
