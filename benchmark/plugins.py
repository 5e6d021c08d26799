"""Plugins bound to one run: options applied, per-run state and generators held,
outputs validated. The engine talks to defenses and attacks only through here."""
from __future__ import annotations

import contextlib
import copy
import signal
import threading

import torch

from . import registry
from .api import Aggregated, UsageError


class PluginFailure(Exception):
    """A plugin broke its contract during a run: the cell ends as `failed`."""


ATTACK_MODIFIED = "attack modified the honest vectors it was given"
DEFENSE_MODIFIED = "defense modified its input gradients"

# What code inside a cell may raise. Besides any Exception, a plugin that calls sys.exit()
# (SystemExit), raises GeneratorExit or raises KeyboardInterrupt itself fails its own cell:
# none of them may end the command with nothing stored, nor stop the matrix. The user's
# Ctrl-C must still stop the command, and Python raises the same KeyboardInterrupt for
# SIGINT (Ctrl-C) wherever the code happens to be, most often inside the defense. So while
# a cell runs (`noting_ctrl_c`), SIGINT goes through a handler that notes its arrival before
# handing it on (raising KeyboardInterrupt, or calling the handler the program had set), and
# a KeyboardInterrupt after a SIGINT always propagates. Where that handler cannot be
# installed (not the main thread, e.g. a Dask worker's task, or a SIGINT handler set
# outside Python), every KeyboardInterrupt propagates; where SIGINT is ignored, none is a
# Ctrl-C. So a Ctrl-C is never swallowed. At the plugin boundary (the plugin's own code on
# the stack) anything else a plugin raises is its failure; elsewhere in a cell, other
# BaseExceptions, which Python never raises by itself, propagate (tests use one to stand
# for a killed process).
_ctrl_c = {"noting": False, "seen": False}


def _noting(previous):
    """A SIGINT handler that notes the signal, then does what `previous` did (raises
    KeyboardInterrupt for Python's default)."""
    def note(signum, frame):
        _ctrl_c["seen"] = True
        if callable(previous) and previous is not signal.default_int_handler:
            return previous(signum, frame)
        raise KeyboardInterrupt
    return note


@contextlib.contextmanager
def noting_ctrl_c():
    """While inside, a SIGINT is told apart from a KeyboardInterrupt that plugin code
    raises itself (see `is_ctrl_c`); the previous handler, which a SIGINT still reaches,
    is restored on exit."""
    previous = signal.getsignal(signal.SIGINT)
    if (threading.current_thread() is not threading.main_thread() or _ctrl_c["noting"]
            or previous is None):  # a handler not set from Python: cannot be chained
        yield
        return
    ignored = previous == signal.SIG_IGN  # e.g. a job started with `&` by a script: no
    if not ignored:                        # Ctrl-C can arrive, every interrupt is a plugin's
        signal.signal(signal.SIGINT, _noting(previous))
    _ctrl_c.update(noting=True, seen=False)
    try:
        yield
    finally:
        if not ignored:
            signal.signal(signal.SIGINT, previous)
        _ctrl_c["noting"] = False


def is_ctrl_c(error: BaseException) -> bool:
    """True for the user's Ctrl-C: a KeyboardInterrupt after a SIGINT, or any one raised
    where SIGINT is not being noted."""
    return isinstance(error, KeyboardInterrupt) and (not _ctrl_c["noting"] or _ctrl_c["seen"])


def fails_the_cell(error: BaseException) -> bool:
    """True for what the code inside a cell (harness, task) may raise that fails only that
    cell: an Exception, SystemExit, GeneratorExit, a KeyboardInterrupt not from Ctrl-C."""
    return isinstance(error, (Exception, SystemExit, GeneratorExit, KeyboardInterrupt)) \
        and not is_ctrl_c(error)


class BoundDefense:
    """A (possibly composed) defense with its options, state and generator for one run.

    In `pre+rule`, each component sees the (n, f) its predecessors hand on (a
    pre-aggregator's `resize`), and is checked and called with them.

    `server_gradient` is the server's own update of the current step (FLTrust's root
    data, benchmark.stages.root), set by the engine before the attack runs (so that a
    probe sees it too) and handed to the components that declare `server_gradient`.
    """

    def __init__(self, text: str, f: int, generator: torch.Generator,
                 components: list[registry.Component] | None = None):
        self.components = components or registry.resolve("defense", text)
        self.f = f
        self.generator = generator
        self.states = [{} if c.spec.stateful else None for c in self.components]
        self.server_gradient: torch.Tensor | None = None

    @property
    def uses_server_data(self) -> bool:
        """Whether a component declares `server_gradient` (the run then holds root data)."""
        return any(component.spec.server_gradient for component in self.components)

    @property
    def rule(self):
        return self.components[-1].spec

    def shapes(self, n: int) -> list[tuple[int, int]]:
        """The (rows, f) each component sees when the defense gets n rows."""
        shapes, f = [], self.f
        for component in self.components:
            shapes.append((n, f))
            resize = component.spec.resize
            if resize is not None:
                n, f = resize(n, f, **component.options)
        return shapes

    def _first_failure(self, n: int):
        """(component, rows, f, reason) for the first component that cannot run, or None."""
        for component, (rows, f) in zip(self.components, self.shapes(n)):
            reason = component.spec.reason(rows, f, **component.options)
            if reason:
                return component, rows, f, reason
        return None

    def reason(self, n: int) -> str | None:
        """Why the defense cannot run on n rows, in the failing rule's words, or None."""
        failure = self._first_failure(n)
        return failure[3] if failure else None

    def check(self, n: int) -> None:
        """Raises UsageError with the rule's own reason if (n, f) is invalid."""
        failure = self._first_failure(n)
        if failure:
            component, rows, f, reason = failure
            seen = "" if (rows, f) == (n, self.f) else f" (it sees n={rows}, f={f})"
            raise UsageError(f"defense {component.label!r} with n={n}, f={self.f}{seen}: "
                             f"{reason}")

    def upper_bound(self, n: int, d: int) -> float | None:
        """The rule's bound; None for a composition: the published bounds are stated for
        the vectors the rule sees, not for what the honest workers submit."""
        bound = self.rule.upper_bound
        if bound is None or len(self.components) > 1:
            return None
        return bound(n, self.f, d)

    def _apply(self, gradients: torch.Tensor, states: list, generator: torch.Generator):
        current = gradients
        for component, state, (_, f) in zip(self.components, states,
                                            self.shapes(len(gradients))):
            extra = {}
            if component.spec.randomized:
                extra["generator"] = generator
            if component.spec.stateful:
                extra["state"] = state
            if component.spec.server_gradient:
                if self.server_gradient is None:
                    raise RuntimeError(f"{component.label!r} declares server_gradient, but "
                                       "no server gradient was given for this step")
                extra["server_gradient"] = self.server_gradient
            current = component.spec.aggregate(current, f, **component.options, **extra)
        return current

    def aggregate(self, gradients: torch.Tensor):
        """What the rule returns, unvalidated, with the run's state and generator: the
        call that the engine validates, as the kernel benchmark times it."""
        return self._apply(gradients, self.states, self.generator)

    def __call__(self, gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Aggregate; returns (vector, selected row indices or None). Validates the output."""
        server = self.server_gradient
        version = None if server is None else server._version
        try:
            result = self.aggregate(gradients)
        except BaseException as error:  # whatever the plugin raises, but the user's Ctrl-C
            if is_ctrl_c(error):
                raise
            raise PluginFailure(f"defense raised {type(error).__name__}: {error}") from error
        if server is not None and server._version != version:
            raise PluginFailure("defense modified the server gradient it was given")
        selected = None
        if isinstance(result, Aggregated):
            result, selected = result.vector, result.selected
            if not all(c.spec.keeps_rows for c in self.components[:-1]):
                selected = None  # indices refer to pre-aggregated rows, not to workers
        expected = (gradients.shape[1],)
        if not isinstance(result, torch.Tensor) or result.shape != expected:
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise PluginFailure(f"defense returned {shape}, expected a tensor of shape {expected}")
        if result.dtype != gradients.dtype:
            raise PluginFailure(f"defense returned dtype {result.dtype}, expected {gradients.dtype}")
        if not torch.isfinite(result).all():
            raise PluginFailure("defense returned a non-finite vector")
        return result, selected

    def probe(self, gradients: torch.Tensor) -> torch.Tensor:
        """The defense as an attack sees it: same rule, but the run's state and generator
        are left untouched so that probing cannot change the run."""
        states = copy.deepcopy(self.states)
        generator = torch.Generator(device=self.generator.device)
        generator.set_state(self.generator.get_state())
        result = self._apply(gradients, states, generator)
        return result.vector if isinstance(result, Aggregated) else result


def check_pair(defense: BoundDefense, attack: "BoundAttack", n: int) -> int:
    """Runs both `check`s (UsageError on failure); returns how many rows the defense sees."""
    rows = n - attack.f if attack.spec.absent else n
    defense.check(rows)
    attack.check(n)
    return rows


def check_config(config) -> None:
    """The plugins' checks for `config`, without building the run; raises UsageError."""
    generator = torch.Generator()
    check_pair(BoundDefense(config.defense, config.f, generator),
               BoundAttack(config.attack, config.byzantine, generator),
               config.participants or config.n)  # the rows a step hands the defense


class DefenseProbe:
    """The defense as an attack calls it: `probe(gradients) -> Tensor[d]` runs the rule with
    its declared f (also `probe.f`) without advancing the run's state or generator."""

    def __init__(self, defense: BoundDefense):
        self.defense = defense
        self.f = defense.f
        self.calls = 0

    def __call__(self, gradients: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        try:
            return self.defense.probe(gradients)
        except BaseException as error:  # whatever the plugin raises, but the user's Ctrl-C
            if is_ctrl_c(error):
                raise
            raise PluginFailure(f"defense raised {type(error).__name__} while the attack "
                                f"probed it: {error}") from error


class BoundAttack:
    """An attack with its options and generator for one run; validates what it returns."""

    def __init__(self, text: str, f_real: int, generator: torch.Generator):
        (self.component,) = registry.resolve("attack", text)
        self.f = 0 if self.spec.clean else f_real  # clean: every worker is honest
        self.generator = generator
        self.states = {} if self.spec.stateful else None  # the run's; Simulation.state_dict

    @property
    def spec(self):
        return self.component.spec

    def check(self, n: int) -> None:
        reason = self.spec.reason(n, self.f, **self.component.options)
        if reason:
            raise UsageError(f"attack {self.component.label!r} with n={n}, f={self.f}: {reason}")

    @property
    def sends_vectors(self) -> bool:
        return not self.spec.absent and self.f > 0

    def craft(self, honest: torch.Tensor, probe: DefenseProbe, **extra) -> torch.Tensor:
        """The plugin's own work, unchecked (`profile-step` times it as the attack)."""
        return self.spec.attack(honest, self.f, probe, **self.component.options, **extra)

    def __call__(self, honest: torch.Tensor, defense: BoundDefense) -> torch.Tensor:
        """The f Byzantine vectors. An attack that writes to `honest` fails the cell: here
        if it wrote through torch (the tensor's version counter moves), in the engine
        (which compares `honest` with the copy it made for the defense) otherwise."""
        d = honest.shape[1]
        if not self.sends_vectors:
            return honest.new_empty((0, d))
        if self.spec.attack is None:
            raise PluginFailure(f"attack {self.component.label!r} defines no `attack` "
                                "function to craft vectors")
        extra = {"generator": self.generator} if self.spec.randomized else {}
        if self.spec.stateful:
            extra["state"] = self.states
        version = honest._version
        try:
            result = self.craft(honest, DefenseProbe(defense), **extra)
        except PluginFailure:
            raise
        except BaseException as error:  # whatever the plugin raises, but the user's Ctrl-C
            if is_ctrl_c(error):
                raise
            raise PluginFailure(f"attack raised {type(error).__name__}: {error}") from error
        if honest._version != version:
            raise PluginFailure(ATTACK_MODIFIED)
        if not isinstance(result, torch.Tensor) or tuple(result.shape) != (self.f, d):
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise PluginFailure(f"attack returned {shape}, expected ({self.f}, {d})")
        return result.to(device=honest.device, dtype=honest.dtype)
