"""How a process that runs cells is tuned: one thread per pool (parallelism comes from
processes), glibc keeping freed memory, the compiled kernels loaded once."""
from __future__ import annotations

import ctypes

import threadpoolctl
import torch

from . import coordinates_numba


def single_thread() -> None:
    """One thread per run: parallelism comes from processes (DESIGN.md, "Scale"). Also
    keeps freed memory in the process (`keep_freed_memory`) and loads the compiled
    coordinate-wise kernels once (from numba's disk cache after the first compile), so no
    run pays for them inside a step."""
    set_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    keep_freed_memory()
    coordinates_numba.warm_up()


def set_threads(count: int) -> None:
    """`count` threads for torch and for every BLAS and OpenMP pool loaded in the process.
    numpy's OpenBLAS reads OPENBLAS_NUM_THREADS only when it loads (before a worker's
    initializer runs) and otherwise starts a thread per core for products such as
    `rows @ ones`, which also hides their work from a thread CPU-time clock."""
    torch.set_num_threads(count)
    threadpoolctl.threadpool_limits(count)


# glibc's mallopt parameters (malloc.h) and the size kept: a step allocates and frees
# several [n, d] matrices (16 MB at n = 51, d = 79,510); by default glibc maps each one
# afresh and returns it to the system on free, so every step pays a page fault per 4 KiB
# touched. Keeping freed memory made the step/fused ratio of profile-step 8% lower
# (paired runs, fashion-mnist, average, little, worker momentum).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEPT_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Asks glibc to serve large allocations from its heap and keep freed memory for the
    next ones; False (nothing changed) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        settings = ((_M_MMAP_THRESHOLD, _KEPT_BYTES), (_M_TOP_PAD, _KEPT_BYTES),
                    (_M_TRIM_THRESHOLD, 4 * _KEPT_BYTES))
        return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
    except (OSError, AttributeError):
        return False
