"""The adversary: the only stage that knows about attacks. It crafts the Byzantine
workers' vectors (an attack plugin, which may probe the defense), or, for a data-level
attack, controls extra workers whose labels it rewrites (the workers stage computes
their gradients like any other's). With replicated servers it also speaks for the
Byzantine servers (a server attack, server_attacks/)."""
from __future__ import annotations

import copy

import torch

from .. import registry
from ..api import UsageError
from ..plugins import BoundAttack, PluginFailure, is_ctrl_c
from .state import on_device


class Adversary:
    def __init__(self, attack: BoundAttack, server_attack: "BoundServerAttack | None" = None,
                 jitter: tuple[float, torch.Generator] = (0.0, None)):
        self.attack = attack
        self.server_attack = server_attack  # None: a single, correct server
        self.jitter, self.jitter_generator = jitter  # RunConfig.attack_jitter and its stream

    @property
    def f(self) -> int:
        return self.attack.f

    @property
    def data_level(self) -> bool:
        return self.attack.spec.flip_labels is not None and self.attack.f > 0

    @property
    def data_workers(self) -> int:
        """Workers the adversary runs through the honest pipeline with poisoned labels."""
        return self.attack.f if self.data_level else 0

    def poison_targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        return self.attack.spec.flip_labels(targets, num_classes)

    @property
    def rows(self) -> int:
        """How many rows the Byzantine workers add to the defense's input."""
        return self.attack.f if self.attack.sends_vectors or self.data_level else 0

    def vectors(self, honest: torch.Tensor, defense, poisoned: torch.Tensor | None
                ) -> torch.Tensor:
        """The Byzantine rows: the poisoned workers' gradients, or the attack's vectors
        crafted from what the honest workers submit (jittered: RunConfig.attack_jitter)."""
        if poisoned is not None:
            return poisoned
        vectors = self.attack(honest, defense)
        return self._jittered(vectors) if self.jitter and len(vectors) else vectors

    def _jittered(self, vectors: torch.Tensor) -> torch.Tensor:
        """Each finite vector plus Gaussian noise of standard deviation jitter × its RMS
        coordinate, drawn from the run's jitter stream; non-finite vectors as sent."""
        noise = torch.randn(vectors.shape, generator=self.jitter_generator,
                            dtype=vectors.dtype).to(vectors.device)
        scale = vectors.norm(dim=1, keepdim=True) / vectors.shape[1] ** 0.5
        finite = torch.isfinite(vectors).all(dim=1, keepdim=True)
        return torch.where(finite, vectors + self.jitter * scale * noise, vectors)

    @staticmethod
    def equivocated(byzantine: torch.Tensor, honest: torch.Tensor) -> torch.Tensor:
        """What equivocating Byzantine workers send the odd-numbered correct servers: the
        mirror image of their vectors about the honest mean (2·mean − v), so that the
        correct servers, which otherwise get the same rows, are pulled apart."""
        return (2 * honest.mean(dim=0)).sub(byzantine)

    def server_models(self, models: torch.Tensor, recipients: int) -> torch.Tensor:
        """What the Byzantine servers send to `recipients` receivers, given the correct
        servers' models [c, d]: [f_ps, d], [f_ps, recipients, d] or nothing [0, d]."""
        return self.server_attack(models, recipients)

    def state_dict(self) -> dict:
        state = {"attack_states": copy.deepcopy(getattr(self.attack, "states", None)),
                 "generator": self.attack.generator.get_state()}
        if self.server_attack is not None:
            state["server_attack"] = self.server_attack.state_dict()
        if self.jitter:
            state["jitter"] = self.jitter_generator.get_state()
        return state

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if state["attack_states"] is not None:
            self.attack.states = on_device(copy.deepcopy(state["attack_states"]), device)
        self.attack.generator.set_state(state["generator"])
        if "jitter" in state:
            self.jitter_generator.set_state(state["jitter"])
        if self.server_attack is not None:
            self.server_attack.load_state_dict(state["server_attack"], device)


class BoundServerAttack:
    """A server attack (server_attacks/) with its options, state and generator for one run;
    validates what it returns."""

    def __init__(self, text: str, f: int, generator: torch.Generator):
        (self.component,) = registry.resolve("server_attack", text)
        self.f = 0 if self.spec.clean else f  # clean: every server is correct
        self.generator = generator
        self.state = {} if self.spec.stateful else None

    @property
    def spec(self):
        return self.component.spec

    @property
    def sends_models(self) -> bool:
        return not self.spec.absent and self.f > 0

    def check(self, servers: int) -> None:
        reason = self.spec.reason(servers, self.f, **self.component.options)
        if reason:
            raise UsageError(f"server attack {self.component.label!r} with servers={servers}, "
                             f"byzantine_servers={self.f}: {reason}")

    def __call__(self, models: torch.Tensor, recipients: int) -> torch.Tensor:
        """What the Byzantine servers send: [f, d] (the same to every recipient) or
        [f, recipients, d]; [0, d] when they send nothing."""
        d = models.shape[1]
        if not self.sends_models:
            return models.new_empty((0, d))
        extra = {}
        if self.spec.randomized:
            extra["generator"] = self.generator
        if self.spec.stateful:
            extra["state"] = self.state
        version = models._version
        try:
            result = self.spec.attack(models, self.f, recipients, **self.component.options,
                                      **extra)
        except BaseException as error:  # whatever the plugin raises, but the user's Ctrl-C
            if is_ctrl_c(error):
                raise
            raise PluginFailure(f"server attack raised {type(error).__name__}: {error}") \
                from error
        if models._version != version:
            raise PluginFailure("server attack modified the correct servers' models")
        shapes = ((self.f, d), (self.f, recipients, d))
        if not isinstance(result, torch.Tensor) or tuple(result.shape) not in shapes:
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise PluginFailure(f"server attack returned {shape}, expected one of {shapes}")
        return result.to(device=models.device, dtype=models.dtype)

    def state_dict(self) -> dict:
        return {"state": copy.deepcopy(self.state), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.state = on_device(copy.deepcopy(state["state"]), device)
        self.generator.set_state(state["generator"])
