"""Which of torch's CPU kernel sets a run uses, pinned so that a run gives the same bytes
on every x86-64 machine.

torch picks its vectorised CPU kernels (ATen's "CPU capability") by what the processor
supports: AVX-512 where present, else AVX2. The two sets round differently in the last
bits, and 300 steps of SGD grow those bits into accuracy differences: re-running
Fashion-MNIST board cells stored on an AVX2 machine on an AVX-512 one gave accuracy gaps
up to 0.089 (11 cells, torch 2.14.1); with AVX2 pinned, the same cells came back byte for
byte. So the harness asks for AVX2 wherever the processor has it, before torch is
imported (torch reads ATEN_CPU_CAPABILITY once). A value the user sets is kept; a
processor without AVX2, or another architecture, keeps torch's own choice.
"""
from __future__ import annotations

import os
import platform
import sys

VARIABLE = "ATEN_CPU_CAPABILITY"
PINNED = "avx2"


def _has_avx2() -> bool:
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx2" in flags and "fma" in flags
    except OSError:
        pass
    return False


def pin() -> None:
    """Sets ATEN_CPU_CAPABILITY=avx2 for this process and the processes it starts, unless
    it is set already or the processor lacks AVX2. Has no effect once torch is imported."""
    if VARIABLE not in os.environ and _has_avx2():
        os.environ[VARIABLE] = PINNED


def capability() -> str:
    """The kernel set torch uses in this process, e.g. 'AVX2' (imports torch)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()
