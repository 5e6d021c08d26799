"""How a run and its defense's host hand each other a step's call and its answer (issue 19).

On a virtual machine, waking a process asleep on a socket costs tens of microseconds (an
interrupt to another core, then that core's cold caches), and a message costs a few system
calls each way: together a fifth of a step on the digits task. So the hot call, each step's
aggregation, goes through a small control block in shared memory (`ControlBlock`): the run
writes the call's shape and a new sequence number, the host answers with the same number,
and the waiting side polls the block (`Waiter`) while its waits have been short. Everything
else (state, probes, failures, the CPU report, closing) stays on the socket
(benchmark.host_wire).

Polling pays only where a core would otherwise be idle: with as many runs as cores, each
run's polling takes the core its neighbour's run needs (measured: 114 digits cells, 2 runs
on 2 cores, 20 % longer with polling). So a run polls only when the command runs at most
one run for every two cores (`POLL_VARIABLE`, set by the executors; unset, as for `cell`:
when there are two cores); otherwise both sides sleep on the socket at once.

A side that has waited longer than `Waiter.SPIN_LIMIT` sleeps on the socket and says so in
the block; the other side then sends a WAKE message after its write. The two sides may
write their flags at the same moment and each read the other's stale one (x86 lets a load
pass an earlier store), so a side's first sleep is a short nap after which it checks the
block again: a wake-up lost that way costs a millisecond, never a hang.

The host is not trusted: the run reads from the block only the answer's sequence number,
its kind and the selected rows, the count bounded by the call's rows.
"""
from __future__ import annotations

import os
import time
from array import array


POLL_VARIABLE = "BENCHMARK_DEFENSE_POLL"  # "1": a run and its host poll, "0": they sleep


def polling_wanted() -> bool:
    """Whether this process's runs poll for their defense's answers (see the module)."""
    setting = os.environ.get(POLL_VARIABLE, "")
    return setting == "1" if setting in ("0", "1") else _cores() >= 2


def set_concurrent_runs(runs: int | None) -> None:
    """Tells the runs this process starts from now on how many run at once (None: not
    known here, as on a remote cluster): they poll only with two cores for each."""
    polls = runs is not None and 2 * runs <= _cores()
    os.environ[POLL_VARIABLE] = "1" if polls else "0"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


class ControlBlock:
    """The int64 slots of a run's control block, over a shared mapping."""

    REQUEST, ROWS, WIDTH, ANSWER, KIND, COUNT, HOST_ASLEEP, RUN_ASLEEP = range(8)
    SELECTED = 8  # COUNT selected row indices from here (COUNT -1: no selection)
    OK, ON_SOCKET = 0, 1  # KIND: the answer is in the block / was sent on the socket

    def __init__(self, buffer):
        self.slots = memoryview(buffer).cast("q")

    @classmethod
    def nbytes(cls, rows: int) -> int:
        return 8 * (cls.SELECTED + rows)

    def capacity(self) -> int:
        return len(self.slots) - self.SELECTED

    def write_selection(self, selected: list[int] | None) -> bool:
        """Whether the selection fits in the block (then written there)."""
        if selected is None:
            self.slots[self.COUNT] = -1
            return True
        if len(selected) > self.capacity():
            return False
        try:
            values = array("q", selected)
        except (TypeError, OverflowError):
            return False
        self.slots[self.SELECTED:self.SELECTED + len(values)] = memoryview(values)
        self.slots[self.COUNT] = len(selected)
        return True

    def read_selection(self, rows: int) -> list[int] | None:
        """The selection the host wrote; ValueError if its count cannot be right."""
        count = self.slots[self.COUNT]
        if count == -1:
            return None
        if not 0 <= count <= min(rows, self.capacity()):
            raise ValueError(f"a selection of {count} rows out of {rows}")
        return self.slots[self.SELECTED:self.SELECTED + count].tolist()


class Waiter:
    """Waits for the other side, polling while waits have been short (if it `polls`).

    While the last wait was shorter than SPIN_LIMIT, it polls the block and the socket
    (yielding the core to any other runnable process) for up to that long before it sleeps;
    after a longer wait (a large model's step, an evaluation) it sleeps at once. The CPU
    time spent polling is counted in `spun`, which a run's recorded CPU time leaves out.
    """

    SPIN_LIMIT = 0.002  # seconds
    NAP = 0.001  # seconds: the first sleep, after which the block is checked again

    def __init__(self, polls: bool = True):
        self.limit = self.SPIN_LIMIT if polls else 0.0
        self.last_wait = 0.0
        self.spun = 0.0  # CPU seconds of this thread spent polling

    def wait(self, connection, timeout: float | None = None, arrived=None, asleep=None):
        """What came first within `timeout` seconds (None: no limit): "block" once
        `arrived()` holds, "socket" when the connection has a message or was closed, None
        when the time ran out. `asleep(bool)` marks this side asleep on the socket."""
        started = time.monotonic()
        end = None if timeout is None else started + timeout
        try:
            return (self._poll(connection, end, arrived or _never)
                    or self._sleep(connection, end, arrived or _never, asleep))
        finally:
            self.last_wait = time.monotonic() - started

    def _poll(self, connection, end, arrived):
        if self.last_wait >= self.limit:
            return None
        cpu = time.thread_time()
        stop = time.monotonic() + self.limit
        stop = stop if end is None else min(stop, end)
        try:
            while True:
                if arrived():
                    return "block"
                if connection.poll(0):
                    return "socket"
                if time.monotonic() >= stop:
                    return None
                os.sched_yield()
        finally:
            self.spun += time.thread_time() - cpu

    def _sleep(self, connection, end, arrived, asleep):
        if asleep is not None:
            asleep(True)
        try:
            nap = self.NAP
            while True:
                if arrived():
                    return "block"
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                limit = left if nap is None else nap if left is None else min(nap, left)
                if connection.poll(limit):
                    return "socket"
                nap = None
        finally:
            if asleep is not None:
                asleep(False)


def _never() -> bool:
    return False
