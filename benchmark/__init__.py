"""Byzantine-resilient distributed SGD benchmark: the shared harness.

Plugins use `benchmark.api`; everything else here is the harness itself.
"""

from . import cpu_kernels

cpu_kernels.pin()  # before anything imports torch: the same bytes on every x86-64 machine
