"""What a cell's plugins leave behind in the worker process that ran it, undone before the
next cell there (issue 19): processes they started, the thread count they changed.

A worker process becomes a child subreaper (Linux), so a process a plugin starts stays
its descendant even after a double fork; after each cell every such process is killed.
Plugins that change the harness's own objects are kept apart by giving each defense its
own worker processes (executors.run_local); files written into the cell's folder fail the
cell (cells.run_cell).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_CHILD_SUBREAPER = 36
KEEP: set[int] = set()  # children that outlive cells (the defense host template)


def adopt_orphans() -> bool:
    """Makes this process the reaper of its orphaned descendants (Linux; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(
            _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> list[int]:
    """The pids of this process's living children (Linux's /proc; [] elsewhere)."""
    me, found = os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry))
    return found


def kill_leftovers(rounds: int = 20) -> int:
    """Kills every child of this process (their orphans come back to it as children, so
    it repeats until none is left or `rounds` pass) and reaps them; returns how many."""
    killed = 0
    for _ in range(rounds):
        pids = [pid for pid in children() if pid not in KEEP]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    reap_finished()
    return killed


def reap_finished() -> list[int]:
    """Reaps every child that has ended (no zombie left); returns their pids."""
    reaped = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def kill_group(pid: int) -> None:
    """SIGKILL to the process group `pid` leads (a defense host's session) and to `pid`."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def after_cell() -> None:
    """In a worker process, after each cell: no process of the cell's plugins survives it,
    and the next cell runs with one thread again."""
    from .processes import set_threads

    kill_leftovers()
    set_threads(1)
