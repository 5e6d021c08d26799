"""Keeping a plugin's process out of the run's memory (issue 19), on Linux.

A process may read another's memory through /proc/PID/mem (or attach to it with ptrace)
when both belong to the same user and the target is "dumpable", and always when it holds
CAP_SYS_PTRACE, which every root process does. So the processes that hold a simulation
(and the host template) mark themselves not dumpable, and a process forked to import a
plugin (a defense's host, the defenses' catalog) gives up every capability before it
imports anything: as root or not, it then cannot read or attach to them.
"""
from __future__ import annotations

import ctypes
import sys

_PR_CAPBSET_DROP, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 24, 4, 38
_CAPABILITY_VERSION_3 = 0x20080522
_LAST_CAPABILITY = 63  # past the kernel's last one, PR_CAPBSET_DROP fails harmlessly


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def keep_memory_private() -> None:
    """This process: not dumpable (its /proc memory and ptrace closed to other processes
    that lack CAP_SYS_PTRACE). Idempotent; nothing outside Linux."""
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def drop_privileges() -> None:
    """This process and whatever it starts: no capability, now or after an exec (the
    bounding set emptied, no new privileges), so root here cannot read another process's
    memory. Raises OSError if it keeps a capability."""
    if not sys.platform.startswith("linux"):
        return
    libc = _libc()
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for capability in range(_LAST_CAPABILITY + 1):
        libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)  # needs CAP_SETPCAP: root only
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    nothing = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: twice 32 bits
    if libc.capset(header, nothing) != 0 and _effective_capabilities():
        error = ctypes.get_errno()
        raise OSError(error, f"could not drop this process's capabilities (capset: errno "
                             f"{error}); run the benchmark as a user without them")


def _effective_capabilities() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0
