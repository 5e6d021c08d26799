import os
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark  # noqa: F401  - first: pins torch's CPU kernels (benchmark.cpu_kernels)
import torch  # noqa: E402

from benchmark.processes import single_thread

REPO = Path(__file__).resolve().parent.parent

single_thread()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -m benchmark ARGS` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


pytest_plugins = ["tests.plugin_fixtures"]
