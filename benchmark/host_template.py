"""The process that forks defense hosts (issue 19), on the run's side: started once per
process tree (benchmark.defense_host is its code), reached by every run in that tree."""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
from multiprocessing.connection import Client
from pathlib import Path

from . import defense_catalog

ROOT = Path(__file__).resolve().parent.parent


class _Template:
    """The process that forks hosts, one per process tree: a process that starts it puts
    its address in BENCHMARK_DEFENSE_TEMPLATE, so that the workers it starts (forked or
    spawned) connect to it instead of each starting its own."""

    VARIABLE = "BENCHMARK_DEFENSE_TEMPLATE"

    def __init__(self):
        self.process = None

    def connect(self):
        """A connection to the template (started first if no live one is known)."""
        for attempt in range(2):
            known = os.environ.get(self.VARIABLE, "")
            if known:
                address, _, key = known.rpartition(" ")
                try:
                    return Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))
                except (OSError, EOFError, ValueError):
                    pass
            if attempt == 0:
                self.start()
        raise RuntimeError("the defense host template did not start")

    def start(self) -> None:
        from .worker_hygiene import KEEP

        self.stop()
        authkey = secrets.token_bytes(32)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}
        env.pop(self.VARIABLE, None)
        env.pop(defense_catalog.VARIABLE, None)  # its catalogs import the defenses
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmark.defense_host"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, cwd=ROOT)
        KEEP.add(self.process.pid)  # not a leftover of a cell (worker_hygiene)
        self.process.stdin.write(authkey.hex().encode() + b"\n")
        self.process.stdin.flush()
        address = self.process.stdout.readline().decode().strip()
        if address:
            os.environ[self.VARIABLE] = f"{address} {authkey.hex()}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


TEMPLATE = _Template()
atexit.register(TEMPLATE.stop)


def ensure_template() -> None:
    """Starts the template now, unless one is reachable (a parent calls it before starting
    workers, which then share it)."""
    TEMPLATE.connect().close()
