"""torch's CPU kernel set is pinned to AVX2 (benchmark.cpu_kernels), so a run gives the
same bytes on AVX2 and AVX-512 machines; a value the user sets is kept."""
import os
import subprocess
import sys

import pytest

from benchmark import cpu_kernels

pytestmark = pytest.mark.skipif(not cpu_kernels._has_avx2(), reason="needs an AVX2 x86-64 CPU")

SHOW = "import benchmark, torch; print(torch.backends.cpu.get_cpu_capability())"


def capability_in_a_fresh_process(**variables) -> str:
    env = {key: value for key, value in os.environ.items() if key != cpu_kernels.VARIABLE}
    env.update(variables)
    done = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True,
                          env=env, check=True)
    return done.stdout.strip()


def test_importing_the_harness_first_pins_avx2():
    assert capability_in_a_fresh_process() == "AVX2"


def test_a_capability_the_user_sets_is_kept():
    assert capability_in_a_fresh_process(ATEN_CPU_CAPABILITY="default") == "DEFAULT"


def test_the_test_processes_run_pinned_too():  # as the user set it, else AVX2
    assert cpu_kernels.capability() == os.environ[cpu_kernels.VARIABLE].upper()
