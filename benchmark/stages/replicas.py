"""Replicated parameter servers (ByzSGD: El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault,
"Genuinely Distributed Byzantine Machine Learning", PODC 2020).

n_ps servers (RunConfig.servers), f_ps of them Byzantine (byzantine_servers), spoken for
by the adversary's server attack. Each correct server is a `Server` stage of its own
(θ, momentum, defense state and generator) behind a `Channel` of its own (shuffle).
Each step:
  pull     every honest worker receives the n_ps models (the correct servers' θ, and
           what the Byzantine servers send it) and applies `pull_rule` (told f_ps);
           it computes its gradient at the model it gets;
  scatter  every correct server aggregates every worker's submission with the defense
           under test and updates its own θ;
  gather   every `gather_every` steps, each correct server replaces its θ by
           `gather_rule` (coordinate-wise median by default: DMC) of the n_ps models it
           receives; momentum and defense state stay.
Model rules see their rows in a seeded random order, like the defense.
"""
from __future__ import annotations

import torch

from ..api import UsageError
from ..config import RunConfig
from ..plugins import BoundDefense
from .adversary import Adversary, BoundServerAttack
from .channel import Channel
from .server import Server

MODEL_RULES = {"pull_rule": "pull", "gather_rule": "gather"}


def _model_rows(config: RunConfig, attack: BoundServerAttack) -> tuple[int, int]:
    """(models a pull or a gather combines, how many of them come from correct servers)."""
    correct = config.servers - attack.f
    return correct + (attack.f if attack.sends_models else 0), correct


def check_model_rules(config: RunConfig) -> None:
    """Refuses (UsageError) a pull or gather with fewer correct models than its rule needs,
    a stateful model rule or one that needs server data, a defense that needs server data
    (FLTrust's root set: one server's), and a server attack's own objections."""
    if BoundDefense(config.defense, config.f, torch.Generator()).uses_server_data:
        raise UsageError(f"defense {config.defense!r} uses the server's own root data "
                         "(server_gradient), which replicated servers do not hold: run it "
                         "with servers=1")
    attack = BoundServerAttack(config.server_attack, config.byzantine_servers,
                               torch.Generator())
    attack.check(config.servers)
    rows, correct = _model_rows(config, attack)
    for key, moment in MODEL_RULES.items():
        rule = BoundDefense(getattr(config, key), config.byzantine_servers, torch.Generator())
        if rule.uses_server_data or any(c.spec.stateful for c in rule.components):
            raise UsageError(f"{key} {getattr(config, key)!r} is stateful or needs server "
                             "data; a model rule must be a plain function of the models it "
                             "gets")
        try:
            rule.check(rows)
        except UsageError as error:
            raise UsageError(
                f"a {moment} with servers={config.servers}, byzantine_servers="
                f"{config.byzantine_servers} and server attack {config.server_attack!r} "
                f"combines {rows} models, {correct} of them from correct servers, which "
                f"{key} {getattr(config, key)!r} cannot use: {error}. Raise servers or "
                "lower byzantine_servers") from None


def _call(rule, generator: torch.Generator, rows: torch.Tensor) -> torch.Tensor:
    """The rule's vector; a randomized rule whose generator is elsewhere (its own process)
    draws from `generator`'s current state, which then moves on as the rule's did."""
    if rule.generator is generator or not any(c.spec.randomized for c in rule.components):
        return rule(rows)[0]
    rule.generator.set_state(generator.get_state())
    vector = rule(rows)[0]
    generator.set_state(rule.generator.get_state())
    return vector


def _shuffled(rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return rows.index_select(0, torch.randperm(len(rows), generator=generator).to(rows.device))


class ReplicatedServers:
    """The correct servers, their channels, and the pull and gather rules.

    A rule's generator draws the order of its rows here and is the rule's own generator:
    `make_rule(text, f, generator)` gives the rule (a BoundDefense, or an IsolatedDefense,
    whose generator lives in its host: it is handed over around each call of a randomized
    rule, so both draw from one stream in the same order either way)."""

    def __init__(self, config: RunConfig, servers: list[Server], channels: list[Channel],
                 adversary: Adversary, rule_generators: tuple[torch.Generator, torch.Generator],
                 make_rule=BoundDefense):
        self.config, self.adversary = config, adversary
        self.servers, self.channels = servers, channels
        self.generators = rule_generators
        self.pull_rule = make_rule(config.pull_rule, config.byzantine_servers,
                                   rule_generators[0])
        self.gather_rule = make_rule(config.gather_rule, config.byzantine_servers,
                                     rule_generators[1])

    def models(self) -> torch.Tensor:
        """The correct servers' models, [c, d]."""
        return torch.stack([server.theta for server in self.servers])

    def _combine(self, rule: BoundDefense, correct: torch.Tensor, sent: torch.Tensor,
                 recipients: int) -> torch.Tensor:
        """Each recipient's rule over the correct models and what the Byzantine servers
        sent it: [d] when every recipient got the same models, else [recipients, d]."""
        generator = self.generators[rule is self.gather_rule]
        if sent.dim() == 2:
            rows = torch.cat([correct, sent])
            return _call(rule, generator, _shuffled(rows, generator))
        combined = [_call(rule, generator, _shuffled(torch.cat([correct, sent[:, r]]),
                                                     generator))
                    for r in range(recipients)]
        return torch.stack(combined)

    def pull(self, workers: int) -> torch.Tensor:
        """The model each of `workers` workers computes its gradient at: [d] when they all
        pulled the same models, else [workers, d]."""
        correct = self.models()
        sent = self.adversary.server_models(correct, workers)
        return self._combine(self.pull_rule, correct, sent, workers)

    def gather(self) -> None:
        """DMC: each correct server's θ becomes the gather rule over the models it gets."""
        correct = self.models()
        sent = self.adversary.server_models(correct, len(self.servers))
        gathered = self._combine(self.gather_rule, correct, sent, len(self.servers))
        for index, server in enumerate(self.servers):
            server.theta = gathered.clone() if gathered.dim() == 1 else gathered[index].clone()

    def drift(self) -> tuple[float, float]:
        """(the largest distance between two correct servers' models, that distance over
        the norm of their mean model)."""
        models = self.models()
        largest = float(torch.pdist(models.double()).max()) if len(models) > 1 else 0.0
        norm = float(models.double().mean(dim=0).norm())
        return largest, largest / norm if norm else float("nan")

    def state_dict(self) -> dict:
        return {"servers": [server.state_dict() for server in self.servers],
                "channels": [channel.state_dict() for channel in self.channels],
                "rule_generators": [generator.get_state() for generator in self.generators]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["servers"]) != len(self.servers):
            raise ValueError(f"checkpoint has {len(state['servers'])} correct servers, "
                             f"this run {len(self.servers)}")
        for server, saved in zip(self.servers, state["servers"]):
            server.load_state_dict(saved)
        for channel, saved in zip(self.channels, state["channels"]):
            channel.load_state_dict(saved)
        for generator, saved in zip(self.generators, state["rule_generators"]):
            generator.set_state(saved)
