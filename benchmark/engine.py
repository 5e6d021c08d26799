"""One simulated run of Byzantine-resilient distributed SGD: the stages of
benchmark.stages (workers, adversary, channel, server, metrics) wired together.

Each step, in this order: honest workers draw batches and compute gradients
(+ l2), which are clipped (the `sampled` set) and pass through worker or server
momentum (the `honest` set); the attack crafts f_real vectors from them; all
rows are shuffled by a seeded permutation; the defense aggregates; the update
applies update momentum and the learning rate; metrics are recorded.

Momentum (μ = momentum, δ = dampening), with Nesterov as in torch.optim.SGD:
  update: m ← μm + (1−δ)·GAR;  θ ← θ − lr·(m, or (1−δ)·GAR + μm with Nesterov)
  worker: m_i ← μm_i + (1−δ)g_i;  worker i submits m_i (or (1−δ)g_i + μm_i)
  server: worker i submits (1−δ)g_i + μ·(previous GAR output);  θ ← θ − lr·GAR

With local_steps = K > 1, g_i is worker i's K local SGD steps summed (benchmark.local_steps).
With servers > 1 the server is replicated (ByzSGD, benchmark.stages.replicas): workers pull
and combine the servers' models, every correct server aggregates and updates its own θ,
and the servers gather every gather_every steps; the metrics row is the first correct
server's, plus the drift among correct servers. With worker_equivocation the Byzantine
workers send the odd-numbered correct servers the mirror image of their vectors.
With a defense that declares `server_gradient` (FLTrust), the server holds a root data set
and computes its own update each step, before the attack (benchmark.stages.root).
`state_dict()` / `load_state_dict()` capture a run between two steps (benchmark.checkpoint).
"""
from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import registry
from .api import TaskData
from .config import RunConfig
from .gradients import ModelFunctions
from .metrics import StepMetrics
from .plugins import BoundAttack, BoundDefense, PluginFailure, check_pair
from .sampling import make_sampler
from .stages.adversary import Adversary, BoundServerAttack
from .stages.channel import Channel, Shuffled
from .stages.participation import Participation
from .stages.channel import rows_unchanged as _rows_unchanged  # noqa: F401 (tests use it)
from .stages.replicas import ReplicatedServers
from .stages.root import RootData
from .stages.server import Server
from .streams import (KEYED_STREAMS, STREAMS, global_rng_state,  # noqa: F401 (their home)
                      keyed_seed, set_global_rng_state, stream_seed)
from .stages.workers import HonestWorkers

@functools.lru_cache(maxsize=4)
def load_task_data(task: str, data_dir: str | None) -> TaskData:
    return registry.lookup("task", task).spec.load(data_dir)


class Diverged(Exception):
    pass


@dataclass
class Outcome:
    status: str = "ok"             # ok | failed | diverged
    reason: str | None = None
    steps_done: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _forward(stage: str, name: str) -> property:
    """An attribute of the Simulation that is `name` of its stage `stage` (read and set)."""
    return property(lambda self: getattr(getattr(self, stage), name),
                    lambda self, value: setattr(getattr(self, stage), name, value))


class Simulation:
    """One run: the stages of benchmark.stages wired together; `step()` advances it by
    one update. The attributes other code reads (theta, defense, attack, sampler, ...)
    and the stage methods (_gradients, _submissions, _shuffle_honest, _aggregate,
    _apply_update, which tests replace on an instance; `instrument` wraps the stages) forward to
    the stages."""

    def __init__(self, config: RunConfig, isolate_defense: bool = False,
                 stream_key: bytes | None = None):
        """`isolate_defense`: each defense in a process of its own (benchmark.isolated_defense).
        `stream_key`: the shuffle's and the defenses' streams keyed by this secret
        (keyed_seed), for a trusted re-run (`verify --keyed`); the run then differs from the
        stored one as another seed would."""
        self.config = config
        self.device = torch.device(config.device)
        task = registry.lookup("task", config.task).spec
        self.data = load_task_data(config.task, config.data_dir).to(self.device)
        torch.manual_seed(stream_seed(config.seed, "model"))
        self.functions = ModelFunctions(task.model().to(self.device), task.loss, config.gradients)

        def generator(stream, index=0):
            keyed = stream_key is not None and stream in KEYED_STREAMS
            return torch.Generator(device="cpu").manual_seed(
                keyed_seed(stream_key, config.seed, stream, index) if keyed
                else stream_seed(config.seed, stream, index))

        deadline = (None if config.time_budget is None
                     else time.monotonic() + config.time_budget)

        def defense(generator, text=config.defense, f=config.f):
            if not isolate_defense:
                return BoundDefense(text, f, generator)
            from .isolated_defense import IsolatedDefense
            isolated = IsolatedDefense(text, f, generator, deadline)
            self.isolated.append(isolated)
            return isolated

        self.isolated = []  # the defenses running in processes of their own (close())
        self.channel = Channel(generator("shuffle"), self.device)
        self.server = Server(config, self.functions.initial_parameters(),
                             defense(generator("defense")), self.device)
        self._link(self.channel, self.server.defense)
        self.adversary = Adversary(BoundAttack(config.attack, config.byzantine,
                                               generator("attack")),
                                   jitter=(config.attack_jitter, generator("jitter")))
        rows = check_pair(self.defense, self.attack, config.participants or config.n)
        self.root = (RootData(config, self.data, self.functions, generator("root"),
                              self.device) if self.defense.uses_server_data else None)
        self.workers = HonestWorkers(
            config, self.data, self.functions,
            make_sampler(config, self.data.train_targets, generator("data"),
                         excluded=None if self.root is None else self.root.indices),
            config.n - self.adversary.f, self.device)
        self.metrics = StepMetrics(config.metrics, config.momentum, config.past_window,
                                   self.defense.upper_bound(rows, self.functions.dimension))
        self.step_index = 0
        self.replicas = self._replicate(generator, defense) if config.servers > 1 else None
        self.participation = None if config.participants is None else Participation(
            config.n, config.participants, generator("participation"))

    @staticmethod
    def _link(channel: Channel, defense) -> None:
        """An isolated defense's input is built in the memory its process shares."""
        channel.allocate = getattr(defense, "input_buffer", None)

    def close(self) -> float:
        """Ends the processes of isolated defenses (a no-op for in-process ones); returns
        the CPU seconds to add to the run's own process time: those they used, less the
        time the run spent polling for their answers (benchmark.host_handoff)."""
        seconds = 0.0
        for isolated in self.isolated:
            seconds += isolated.cpu_seconds() - isolated.polled_seconds()
            isolated.close()
        return seconds

    def _replicate(self, generator, defense) -> ReplicatedServers:
        """The correct servers beside the first (each with its own defense state, generators
        and channel), and the Byzantine servers' attack given to the adversary."""
        config = self.config
        self.adversary.server_attack = BoundServerAttack(
            config.server_attack, config.byzantine_servers, generator("server_attack"))
        servers, channels = [self.server], [self.channel]
        for index in range(1, config.servers - self.adversary.server_attack.f):
            servers.append(Server(config, self.server.theta0.clone(),
                                  defense(generator("servers", 2 * index)), self.device))
            channels.append(Channel(generator("servers", 2 * index + 1), self.device))
            self._link(channels[-1], servers[-1].defense)
        return ReplicatedServers(config, servers, channels, self.adversary,
                                 (generator("model_rules", 0), generator("model_rules", 1)),
                                 make_rule=lambda text, f, rules: defense(rules, text, f))

    # what the stages hold, under the names the rest of the code has always used
    theta = _forward("server", "theta")
    theta0 = _forward("server", "theta0")
    update_momentum = _forward("server", "update_momentum")
    previous_aggregate = _forward("server", "previous_aggregate")
    defense = _forward("server", "defense")
    worker_momentum = _forward("workers", "worker_momentum")
    points = _forward("workers", "points")
    sampler = _forward("workers", "sampler")
    attack = _forward("adversary", "attack")
    shuffle_generator = _forward("channel", "generator")

    @property
    def honest_count(self) -> int:
        return self.workers.count

    @property
    def data_level_attack(self) -> bool:
        return self.adversary.data_level

    def _gradients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(clipped honest gradients, honest losses, clipped Byzantine gradients or None)."""
        gradients, losses = self.workers.gradients(
            self.theta, self.config.lr_at(self.step_index), self.adversary)
        honest = self.honest_count
        if self.adversary.data_workers:
            return gradients[:honest], losses[:honest], gradients[honest:]
        return gradients, losses[:honest], None

    def _submissions(self, sampled: torch.Tensor) -> torch.Tensor:
        return self.workers.submissions(sampled, self.previous_aggregate)

    def _shuffle_honest(self, honest: torch.Tensor) -> Shuffled:
        return self.channel.shuffle_honest(honest, self.adversary.rows)

    def _aggregate(self, shuffled: Shuffled, byzantine: torch.Tensor):
        return self.channel.aggregate(shuffled, byzantine, self.defense)

    def _apply_update(self, aggregate: torch.Tensor, lr: float) -> None:
        self.server.apply_update(aggregate, lr)

    def instrument(self, wrap: Callable[[str, Any], Any]) -> None:
        """The hook `profile-step` times a step through (benchmark.instrument)."""
        from .instrument import instrument
        instrument(self, wrap)

    def step(self) -> dict[str, float]:
        """One update; returns its metrics row. Raises PluginFailure or Diverged."""
        if self.replicas is not None:
            return self._replicated_step()
        lr = self.config.lr_at(self.step_index)
        sampled, losses, poisoned = self._gradients()
        loss = float(losses.mean())
        if not math.isfinite(loss):
            raise Diverged(f"non-finite training loss at step {self.step_index}")
        honest = self._submissions(sampled)
        if self.root is not None:  # before the attack: its probes see this step's rule
            self.defense.server_gradient = self.root.gradient(self.theta, lr,
                                                              self.previous_aggregate)
        if self.participation is not None:
            sampled, honest, poisoned = self.participation.select(sampled, honest, poisoned,
                                                                  self.attack)
        shuffled = self._shuffle_honest(honest)
        byzantine = self.adversary.vectors(honest, self.defense, poisoned)
        aggregate, byzantine_selected = self._aggregate(shuffled, byzantine)
        if self.participation is not None:
            self.participation.restore(self.attack)
        theta_distance = float((self.theta - self.theta0).norm())  # ‖θ_t − θ_0‖, before the update
        self._apply_update(aggregate, lr)
        if not torch.isfinite(self.theta).all():
            raise Diverged(f"non-finite parameters after step {self.step_index}")
        row = self.metrics.row(
            step=self.step_index, lr=lr, points=self.points, loss=loss,
            theta_distance=theta_distance, sampled=sampled,
            honest=honest, attack=byzantine, defense=aggregate,
            byzantine_selected=byzantine_selected)
        self.step_index += 1
        return row

    def _replicated_step(self) -> dict[str, float]:
        """`step` with replicated servers (benchmark.stages.replicas): pull, gradients at
        the pulled models, every correct server aggregates and updates, gather every
        T steps. The metrics row is the first correct server's, with the drift."""
        config, replicas, honest_count = self.config, self.replicas, self.honest_count
        lr = config.lr_at(self.step_index)
        theta_distance = float((self.theta - self.theta0).norm())
        pulled = replicas.pull(honest_count + self.adversary.data_workers)
        gradients, losses = self.workers.gradients(pulled, lr, self.adversary)
        poisoned = gradients[honest_count:] if self.adversary.data_workers else None
        sampled = gradients if poisoned is None else gradients[:honest_count]
        loss = float(losses[:honest_count].mean())
        if not math.isfinite(loss):
            raise Diverged(f"non-finite training loss at step {self.step_index}")
        # worker and update momentum: one submission for every server; server momentum
        # adds each server's own previous aggregate
        shared = None if config.momentum_at == "server" else self._submissions(sampled)
        byzantine, mirrored, first = None, None, None
        for index, (server, channel) in enumerate(zip(replicas.servers, replicas.channels)):
            honest = shared if shared is not None else self.workers.submissions(
                sampled, server.previous_aggregate)
            shuffled = channel.shuffle_honest(honest, self.adversary.rows)
            if byzantine is None or shared is None:
                byzantine, mirrored = self.adversary.vectors(honest, server.defense,
                                                             poisoned), None
            sent = byzantine
            if config.worker_equivocation and index % 2 and len(byzantine):
                mirrored = (self.adversary.equivocated(byzantine, honest)
                            if mirrored is None else mirrored)
                sent = mirrored
            aggregate, byzantine_selected = channel.aggregate(shuffled, sent, server.defense)
            server.apply_update(aggregate, lr)
            first = first or (honest, byzantine, aggregate, byzantine_selected)
        gathered = (self.step_index + 1) % config.gather_every == 0
        if gathered:
            replicas.gather()
        if not all(torch.isfinite(server.theta).all() for server in replicas.servers):
            raise Diverged(f"non-finite parameters after step {self.step_index}")
        honest, byzantine, aggregate, byzantine_selected = first
        row = self.metrics.row(
            step=self.step_index, lr=lr, points=self.points, loss=loss,
            theta_distance=theta_distance, sampled=sampled, honest=honest, attack=byzantine,
            defense=aggregate, byzantine_selected=byzantine_selected)
        drift, ratio = replicas.drift()
        row.update(server_drift=drift, server_drift_ratio=ratio, gathered=float(gathered))
        self.step_index += 1
        return row

    def evaluate(self) -> dict[str, float]:
        data = self.data
        if self.replicas is None:
            accuracy, loss = self.functions.evaluate(self.theta, data.test_inputs,
                                                     data.test_targets)
            return {"step": self.step_index, "accuracy": accuracy, "loss": loss}
        results = [self.functions.evaluate(server.theta, data.test_inputs, data.test_targets)
                   for server in self.replicas.servers]
        accuracies = [accuracy for accuracy, _ in results]
        median = statistics.median(accuracies)
        return {"step": self.step_index, "accuracy": median,
                "loss": statistics.median(loss for _, loss in results),
                "worst_accuracy": min(accuracies), "median_accuracy": median}

    def state_dict(self) -> dict:
        """Everything the rest of the run depends on: counters, parameters, momentum at
        every placement, model buffers, stateful defenses, every random generator, the
        data order and the metrics history (benchmark.checkpoint stores it). The stages'
        own state_dicts, laid out as checkpoints have always been."""
        server, workers = self.server.state_dict(), self.workers.state_dict()
        adversary = self.adversary.state_dict()
        return {
            "step_index": self.step_index, "points": workers["points"],
            "tensors": {**server["tensors"], "worker_momentum": workers["worker_momentum"]},
            "buffers": {name: b.clone() for name, b in self.functions.buffers.items()},
            "defense_states": server["defense_states"],
            "attack_states": adversary["attack_states"],
            "generators": {"shuffle": self.channel.state_dict()["generator"],
                           "defense": server["generator"], "attack": adversary["generator"],
                           **{key: adversary[key] for key in ("jitter",) if key in adversary}},
            "sampler": workers["sampler"],
            "metrics_past": [mean.clone() for mean in self.metrics.past],
            "global_rng": global_rng_state(self.device),
        } | ({} if self.replicas is None else {"replicas": self.replicas.state_dict(),
                                                "server_attack": adversary["server_attack"]}
             ) | ({} if self.participation is None
                  else {"participation": self.participation.state_dict()}
             ) | ({} if self.root is None else {"root": self.root.state_dict()})

    def load_state_dict(self, state: dict) -> None:
        """Restores what `state_dict` returned, into a Simulation built from the same config."""
        tensors, generators = state["tensors"], state["generators"]
        self.server.load_state_dict({"tensors": tensors,
                                     "defense_states": state["defense_states"],
                                     "generator": generators["defense"]})
        self.workers.load_state_dict({"points": state["points"],
                                      "worker_momentum": tensors["worker_momentum"],
                                      "sampler": state["sampler"]})
        for name, buffer in self.functions.buffers.items():
            buffer.copy_(state["buffers"][name])
        self.adversary.load_state_dict({"attack_states": state["attack_states"],
                                        "generator": generators["attack"]}
                                       | {key: generators[key] for key in ("jitter",)
                                          if key in generators}
                                       | ({"server_attack": state["server_attack"]}
                                          if self.replicas is not None else {}), self.device)
        self.channel.load_state_dict({"generator": generators["shuffle"]})
        self.metrics.past.clear()
        self.metrics.past.extend(mean.to(self.device) for mean in state["metrics_past"])
        set_global_rng_state(state["global_rng"], self.device)
        if self.participation is not None:
            self.participation.load_state_dict(state["participation"])
        if self.root is not None:
            self.root.load_state_dict(state["root"])
        self.step_index = state["step_index"]
        if self.replicas is not None:
            self.replicas.load_state_dict(state["replicas"])


def run(config: RunConfig, on_step: Callable[[dict], None], on_eval: Callable[[dict], None],
        simulation: Simulation | None = None,
        on_checkpoint: Callable[[Simulation], None] | None = None) -> Outcome:
    """Runs `config` to its last step (from the simulation's current step), feeding rows
    to the callbacks, and `on_checkpoint` every `config.checkpoint_every` steps before the
    last. Never raises for a plugin failure or divergence: those end the run with the
    matching status."""
    started = time.monotonic()
    sim = simulation or Simulation(config)
    outcome = Outcome()
    if sim.step_index == 0:
        on_eval(sim.evaluate())
    try:
        while sim.step_index < config.steps:
            on_step(sim.step())
            if sim.step_index % config.eval_every == 0 or sim.step_index == config.steps:
                on_eval(sim.evaluate())
            if (on_checkpoint is not None and config.checkpoint_every
                    and sim.step_index % config.checkpoint_every == 0
                    and sim.step_index < config.steps):
                on_checkpoint(sim)
            elapsed = time.monotonic() - started
            if config.time_budget is not None and elapsed > config.time_budget:
                raise PluginFailure(f"time budget of {config.time_budget:g} s exceeded "
                                    f"after step {sim.step_index}")
    except PluginFailure as failure:
        outcome.status, outcome.reason = "failed", str(failure)
    except Diverged as divergence:
        outcome.status, outcome.reason = "diverged", str(divergence)
    outcome.steps_done = sim.step_index
    outcome.timings["seconds"] = time.monotonic() - started
    return outcome
