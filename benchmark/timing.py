"""Where and how a micro-benchmark takes its timings: the machine it ran on (recorded
with the results; results from another machine are not merged), and cold caches (what it
runs, untimed, before each timed call, so that every call reads its input from memory
whatever ran before it)."""
from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str, settings) -> dict:
    info = {"device": torch.device(device).type, "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "threads": settings.threads,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "git_commit": _git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def same_machine(a: dict, b: dict) -> bool:
    keys = ("device", "cpu", "cpu_count", "threads", "torch", "numpy", "gpu")
    return all(a.get(key) == b.get(key) for key in keys)


def _last_level_cache_bytes() -> int:
    for index in range(4, 0, -1):
        try:
            text = Path(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size").read_text()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        text = text.strip()
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    return 32 << 20


@functools.cache
def eviction_buffer() -> torch.Tensor:
    """float32, twice the size of the last-level cache; made once per process."""
    return torch.zeros(2 * _last_level_cache_bytes() // 4, dtype=torch.float32)


def evict_caches() -> None:
    """Writes the eviction buffer, pushing out whatever the previous call left in cache."""
    eviction_buffer().add_(1.0)
