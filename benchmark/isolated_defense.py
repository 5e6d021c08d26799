"""A run's defense in a process of its own (issue 19), on the run's side.

`IsolatedDefense` stands where `BoundDefense` stands in a run: the engine, the attack's
probes and checkpoints call it the same way, and it forwards each call to a host process
(benchmark.defense_host) that holds nothing of the simulation. The rows reach the host
through shared memory: the run's channel builds each step's input directly in the shared
buffer (`input_buffer`), so a step costs two short messages and no copy. The host runs the
same code as in-process, so results are byte-identical.

Whatever the host does ends only its own run: an exception becomes the message the
in-process defense would give; a host that exits, crashes or is killed (memory limit) fails
the cell with the reason; one that does not answer within the cell's time budget is killed.
Each run gets a fresh host; `close` kills it and whatever it started.

The run keeps a `BoundDefense` for the rule's declarations only (check, shapes, bound,
flags), which it never calls; in the commands' processes those come from a catalog process
and no defense module is imported (benchmark.defense_catalog). Set
BENCHMARK_DEFENSE_IN_PROCESS=1 (the commands' `--in-process-defense`) to run defenses in
the run's process, for debugging.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import sys
import time
import weakref
from multiprocessing.reduction import send_handle
from pathlib import Path

import numpy
import torch

from . import defense_catalog
from .host_handoff import POLL_VARIABLE, ControlBlock, Waiter, polling_wanted
from .host_template import TEMPLATE
from .host_wire import WAKE, is_wake, raised_exception, receive_reply, send, tag
from .plugins import BoundDefense, PluginFailure
from .process_guard import keep_memory_private
from .worker_hygiene import kill_group

IN_PROCESS_VARIABLE = "BENCHMARK_DEFENSE_IN_PROCESS"


def wanted(device: str) -> bool:
    """Whether a run on `device` gets its defense in a process of its own: on Linux CPU
    runs unless BENCHMARK_DEFENSE_IN_PROCESS is set (CUDA tensors would need CUDA IPC,
    not built yet)."""
    return (sys.platform.startswith("linux") and not device.startswith("cuda")
            and os.environ.get(IN_PROCESS_VARIABLE, "") in ("", "0"))


def process_settings() -> dict[str, str | None]:
    """How this process runs defenses, as the variables that say it: in-process or not,
    declarations imported or from a catalog, polling for answers or not. A process running
    cells for another one that did not start it (a remote Dask worker) takes them over
    (`settings_applied`)."""
    return {name: os.environ.get(name)
            for name in (IN_PROCESS_VARIABLE, defense_catalog.VARIABLE, POLL_VARIABLE)}


def _set_settings(settings: dict[str, str | None]) -> None:
    for name, value in settings.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def settings_applied(settings: dict[str, str | None]):
    """Within it, this process runs defenses as `settings` say; restored after."""
    saved = process_settings()
    _set_settings(settings)
    try:
        yield
    finally:
        _set_settings(saved)


class _RemoteGenerator:
    """The host's generator as checkpoints see it (get_state / set_state)."""

    def __init__(self, defense: "IsolatedDefense"):
        self.defense = weakref.proxy(defense)  # no cycle: the host ends with its defense

    def get_state(self) -> torch.Tensor:
        return self.defense._state()[2]

    def set_state(self, state: torch.Tensor) -> None:
        self.defense._set_state(self.defense.states, state)


class IsolatedDefense:
    read_only_input = True  # the host maps the rows read-only (benchmark.stages.channel)

    def __init__(self, text: str, f: int, generator: torch.Generator,
                 deadline: float | None = None):
        keep_memory_private()  # the host cannot read this process (benchmark.process_guard)
        self.declared = BoundDefense(text, f, generator)  # declarations only, never called
        self.f = f
        self.components = self.declared.components
        self.deadline = deadline
        self.server_gradient: torch.Tensor | None = None
        self.generator = _RemoteGenerator(self)
        self._rows = self._output = self._d = None  # the shared buffers and their (d, dtype)
        self._control: ControlBlock | None = None  # each step's call (benchmark.host_handoff)
        self._calls = 0
        self._capacity = 0
        self.connection = TEMPLATE.connect()
        self._waiter = Waiter(polling_wanted())
        send(self.connection, os.getpid())
        self.pid = receive_reply(self.connection)
        self._crash_report, report = os.pipe()  # the host's faulthandler writes there
        os.set_blocking(self._crash_report, False)
        self._finalizer = weakref.finalize(self, _close, self.connection, self.pid,
                                           self._crash_report)
        send(self.connection, {
            "plugin_path": os.environ.get("BENCHMARK_PLUGINS"), "f": f,
            "generator": generator.get_state(), "polls": self._waiter.limit > 0,
            "components": [_entry(component) for component in self.components]})
        send_handle(self.connection, report, self.pid)
        os.close(report)
        self._reply("starting")

    # the declarations, from the in-process BoundDefense
    uses_server_data = property(lambda self: self.declared.uses_server_data)
    rule = property(lambda self: self.declared.rule)

    def shapes(self, n):
        return self.declared.shapes(n)

    def reason(self, n):
        return self.declared.reason(n)

    def check(self, n):
        self.declared.check(n)

    def upper_bound(self, n, d):
        return self.declared.upper_bound(n, d)

    # the calls, answered by the host
    def input_buffer(self, rows: int, d: int, dtype: torch.dtype) -> torch.Tensor:
        """A [rows, d] tensor in memory the host shares, for the channel to fill."""
        if self._rows is None or rows * d * dtype.itemsize > self._capacity \
                or self._d != (d, dtype):
            self._share(rows * d * dtype.itemsize, d * dtype.itemsize, rows, dtype)
            self._d = (d, dtype)
        return torch.frombuffer(self._rows, dtype=dtype, count=rows * d).view(rows, d)

    def _share(self, nbytes: int, output_bytes: int, rows: int, dtype: torch.dtype) -> None:
        buffers = []
        for size in (nbytes, output_bytes, ControlBlock.nbytes(rows)):
            handle = os.memfd_create("defense-rows")
            os.ftruncate(handle, size)
            buffers.append((handle, mmap.mmap(handle, size)))
        send(self.connection, ("buffers", nbytes, output_bytes, ControlBlock.nbytes(rows), dtype))
        for handle, _ in buffers:
            send_handle(self.connection, handle, self.pid)
            os.close(handle)
        (_, self._rows), (_, self._output), (_, control) = buffers
        self._control = ControlBlock(control)
        self._capacity = nbytes
        self._start = torch.frombuffer(self._rows, dtype=torch.uint8, count=1).data_ptr()

    def __call__(self, gradients: torch.Tensor):
        rows, d = gradients.shape
        if not self._holds(gradients):
            self.input_buffer(rows, d, gradients.dtype).copy_(gradients)
        if self.server_gradient is None:
            reply = self._call_through_block(rows, d)
        else:
            reply = self._ask(("aggregate", rows, d, gradients.dtype, self.server_gradient),
                              "aggregating")
        if reply[0] == "failed":
            raise PluginFailure(reply[1])
        vector = torch.frombuffer(self._output, dtype=gradients.dtype, count=d).clone()
        if not _finite(vector):
            raise PluginFailure("defense returned a non-finite vector")
        selected = None if reply[1] is None else torch.tensor(reply[1], dtype=torch.long)
        return vector, selected

    def _call_through_block(self, rows: int, d: int) -> tuple:
        """The step's call through the control block; the reply, as the socket gives it."""
        slots, doing = self._control.slots, "aggregating"
        slots[ControlBlock.ROWS], slots[ControlBlock.WIDTH] = rows, d
        self._calls += 1
        slots[ControlBlock.REQUEST] = self._calls
        if slots[ControlBlock.HOST_ASLEEP]:
            self._send(WAKE, doing)
        while True:
            arrived = self._waiter.wait(self.connection, self._time_left(),
                                        arrived=self._answered, asleep=self._asleep)
            if arrived is None:
                raise self._timed_out(doing)
            if arrived == "socket":  # a wake-up, the host gone, or the reply itself
                reply = self._read(doing)
                if not is_wake(reply):
                    return _raise_if_raised(reply)
            elif slots[ControlBlock.KIND] == ControlBlock.OK:
                try:
                    return ("ok", self._control.read_selection(rows))
                except ValueError as error:
                    self.close()
                    raise PluginFailure(f"the defense's process wrote a wrong answer while "
                                        f"{doing} ({error}); its process was killed") from None
            else:
                return self._reply(doing)

    def _holds(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is the shared buffer's rows (the channel built it there)."""
        return (self._rows is not None and tensor.dtype == self._d[1]
                and tensor.data_ptr() == self._start and tensor.is_contiguous())

    def probe(self, gradients: torch.Tensor) -> torch.Tensor:
        return self._ask(("probe", gradients, self.server_gradient), "probed")[1]

    @property
    def states(self):
        return self._state()[1]

    @states.setter
    def states(self, states) -> None:
        self._set_state(states, self._state()[2])

    def _state(self):
        return self._ask(("state",), "saving its state")

    def _set_state(self, states, generator) -> None:
        self._ask(("set_state", states, generator), "restoring its state")

    def _ask(self, message: tuple, doing: str):
        self._send(message, doing)
        return self._reply(doing)

    def _send(self, message, doing: str) -> None:
        try:
            send(self.connection, message)
        except OSError:
            raise self._ended(doing) from None

    def _answered(self) -> bool:
        return self._control.slots[ControlBlock.ANSWER] == self._calls

    def _asleep(self, asleep: bool) -> None:
        self._control.slots[ControlBlock.RUN_ASLEEP] = int(asleep)

    def _time_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def _reply(self, doing: str):
        """The next reply on the socket, wake-ups skipped; a raised one raised here."""
        while True:
            if not self._waiter.wait(self.connection, self._time_left()):
                raise self._timed_out(doing)
            reply = self._read(doing)
            if not is_wake(reply):
                return _raise_if_raised(reply)

    def _read(self, doing: str):
        try:
            return receive_reply(self.connection)
        except (EOFError, OSError):
            raise self._ended(doing) from None
        except pickle.UnpicklingError as error:  # code in a reply: the host is not trusted
            self.close()
            raise PluginFailure(f"the defense's process sent a reply that is not data while "
                                f"{doing} ({error}); its process was killed") from None

    def _timed_out(self, doing: str) -> PluginFailure:
        self.close()
        return PluginFailure(f"defense did not answer while {doing} within the cell's "
                             "time budget; its process was killed")

    def _ended(self, doing: str) -> PluginFailure:
        try:
            report = os.read(self._crash_report, 1 << 16).decode(errors="replace")
        except OSError:  # nothing written (it exited), or already closed
            report = ""
        self.close()
        if "Segmentation fault" in report:
            return PluginFailure(f"the defense's process crashed (segmentation fault) while "
                                 f"{doing}, as a write to its read-only input gradients does")
        return PluginFailure(f"the defense's process ended while {doing} (the defense exited, "
                             "crashed, or went over its memory limit)")

    def cpu_seconds(self) -> float:
        """The CPU time the host has used, less its polling for calls (0 once it has
        ended)."""
        try:
            return self._ask(("cpu",), "reporting its CPU time")[1]
        except (PluginFailure, OSError, ValueError):
            return 0.0

    def polled_seconds(self) -> float:
        """The CPU time this process has spent polling for the host's answers."""
        return self._waiter.spun

    def close(self) -> None:
        """Ends the host and everything it started; the shared buffers go with the last
        tensor that views them."""
        self._finalizer()
        self._rows = self._output = None


def _raise_if_raised(reply):
    if tag(reply) == "raised":
        raise raised_exception(reply)
    return reply


def _finite(vector: torch.Tensor) -> bool:
    """torch.isfinite(vector).all(), through numpy where it can (a tenth of the cost on a
    small vector, which a small model's step feels)."""
    if vector.dtype in (torch.float32, torch.float64):
        return bool(numpy.isfinite(vector.numpy()).all())
    return bool(torch.isfinite(vector).all())


def _entry(component) -> dict:
    from . import registry

    path = Path(component.plugin.path)
    package = Path(registry.__file__).resolve().parent.parent / registry.KINDS["defense"][0]
    return {"folder": str(path.parent), "stem": path.stem, "path": str(path),
            "package": path.parent.resolve() == package.resolve(),
            "options": dict(component.options)}


def _close(connection, pid: int, crash_report: int) -> None:
    try:
        send(connection, ("close",))
    except OSError:
        pass
    connection.close()
    os.close(crash_report)
    kill_group(pid)
