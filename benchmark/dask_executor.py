"""Running cells on a Dask cluster (`tcp://host:8786`, e.g. dask-jobqueue on Slurm) or on a
local one started here: the same cells, time limits and retries as benchmark.executors.

The workers need the same code and data. A worker that sees the results root (a shared file
system: this process leaves a mark file in it for the run) runs its cell there, like a local
worker: checkpoints (`--checkpoint-every`) survive its death and the retry resumes from the
last one. Otherwise it runs the cell in a scratch folder and sends the files back, and this
process publishes them. The mark file names the process that wrote it (host and pid), so a
later run removes the mark of a run that was killed (`remove_stale_marks`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable

from . import defense_catalog, executors, store
from .cells import CellResult, completed, publish_cell, run_cell
from .config import RunConfig
from .executors import ATTEMPTS, POLL, THREAD_VARIABLES, OnDone
from .host_handoff import set_concurrent_runs
from .isolated_defense import process_settings, settings_applied
from .process_guard import keep_memory_private

# The limits and outcomes shared with local processes are looked up in `executors` when
# called (executors.hard_limit, ...), so that replacing one there changes both executors.

SHARED_MARK = ".dask-run-"  # + a token: the file by which a worker recognises the root


def write_mark(root: Path) -> Path:
    """A new mark file for this run in `root`, naming its owner (this host and process)."""
    mark = root / f"{SHARED_MARK}{uuid.uuid4().hex}"
    mark.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return mark


def mark_owner(path: Path) -> tuple[str, int] | None:
    """(host, pid) of the run that wrote a mark file; None if the mark does not say (one
    written before marks named their owner) or cannot be read."""
    try:
        owner = json.loads(path.read_text())
        return str(owner["host"]), int(owner["pid"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def mark_is_stale(path: Path) -> bool:
    """True if the mark's owner ran on this host and is gone (a killed run's leftover)."""
    owner = mark_owner(path)
    return owner is not None and owner[0] == socket.gethostname() \
        and not store.process_exists(owner[1])


def remove_stale_marks(root: Path | str) -> None:
    """Removes the marks that killed runs of this host left in `root`; marks of running
    runs, of other hosts and of unknown owners stay."""
    root = Path(root)
    for path in root.glob(f"{SHARED_MARK}*") if root.is_dir() else ():
        if mark_is_stale(path):
            path.unlink(missing_ok=True)


def _run_packed(config_dict: dict, root: str | None = None, mark: str | None = None,
                deadline: float | None = None, defense_settings: dict | None = None
                ) -> tuple[CellResult, dict[str, bytes] | None]:
    """On a Dask worker: runs the cell under `root` if this worker sees the run's mark
    file there (returns no files: the cell is published), else in a scratch folder
    (returns its files); postponed without running once `deadline` has passed. The
    defense runs as `defense_settings` (the submitting command's) say: a worker started
    apart from the command (`dask worker`) has not inherited them."""
    with settings_applied(defense_settings or process_settings()):
        if defense_catalog.wanted():
            keep_memory_private()  # as a command's own process (cli._common)
        return _run_here(config_dict, root, mark, deadline)


def _run_here(config_dict, root, mark, deadline):
    from distributed import get_worker

    config = RunConfig.from_dict(config_dict)
    if executors._past(deadline):
        return executors._postponed(config), None
    executors._init_worker()
    try:
        worker = get_worker()
        worker.log_event("cell-start", {"key": config.hash(), "worker": worker.address})
    except ValueError:  # not on a worker (e.g. a test calling this directly)
        pass
    if root is not None and mark is not None and (Path(root) / mark).exists():
        return run_cell(config, root), None
    with tempfile.TemporaryDirectory(prefix="cell-") as scratch:
        result = run_cell(config, scratch, resume=False)
        files = {path.name: path.read_bytes() for path in sorted(result.folder.iterdir())}
    return dataclasses.replace(result, folder=None), files


def _publish_files(root: Path | str, config: RunConfig, files: dict[str, bytes]) -> Path:
    final = store.cell_dir(root, config)
    temp = store.new_temp_dir(final)
    for name, data in files.items():
        (temp / Path(name).name).write_bytes(data)
    publish_cell(temp, final)
    return final


def start_local_cluster(workers: int):
    """A Dask cluster on loopback: `workers` processes with one thread each."""
    import dask
    from distributed import LocalCluster

    # One failure more than ATTEMPTS - 1: restarting the worker of a cell past its time limit
    # can also take down a cell the scheduler had just handed to that worker.
    with dask.config.set({"distributed.scheduler.allowed-failures": ATTEMPTS,
                          "distributed.scheduler.worker-saturation": 1.0}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=":0",
                            env={variable: "1" for variable in THREAD_VARIABLES})


def run_dask(configs: Iterable[RunConfig], root: Path | str, on_done: OnDone, *,
             scheduler: str | None = None, workers: int | None = None,
             deadline: float | None = None) -> list[CellResult]:
    """Runs `configs` on the Dask cluster at `scheduler`, or on a local one of `workers`
    processes. Complete cells are skipped here; the others go to the cluster."""
    from distributed import Client

    set_concurrent_runs(None if scheduler else workers or 1)  # carried by process_settings
    cluster = None if scheduler else start_local_cluster(workers or 1)
    results: list[CellResult] = []
    with Client(scheduler or cluster) as client:
        try:
            results = _run_on(client, configs, root, on_done, deadline)
        finally:
            if cluster is not None:
                cluster.close()
    return results


def _run_on(client, configs, root, on_done: OnDone, deadline: float | None
            ) -> list[CellResult]:
    from concurrent.futures import CancelledError

    from distributed import wait as dask_wait

    results, todo = [], []
    for config in map(executors.with_budget, configs):
        result = completed(config, root)
        if result:
            results.append(result)
            on_done(result)
        else:
            todo.append(config)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_marks(root)
    mark = write_mark(root)
    futures = {client.submit(_run_packed, config.to_dict(), str(root), mark.name, deadline,
                             process_settings(), key=f"cell-{config.hash()}", pure=False): config
               for config in todo}
    clocks = _Clocks()
    try:
        while futures:
            running = [future for future in futures if not future.done()]
            if running:
                try:
                    dask_wait(running, timeout=POLL, return_when="FIRST_COMPLETED")
                except (TimeoutError, CancelledError):  # a cell cancelled past its limit
                    pass
            for future in sorted((f for f in futures if f.done()), key=lambda f: f.key):
                config = futures.pop(future)
                results.append(_collect(future, config, root))
                future.release()  # its files are published: free the worker's copy
                on_done(results[-1])
            clocks.cancel_overdue(client, futures)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        mark.unlink(missing_ok=True)
    return results


def _collect(future, config: RunConfig, root) -> CellResult:
    if future.status == "cancelled":
        return executors._timed_out(config, root)
    try:
        result, files = future.result()
    except Exception as error:  # KilledWorker: its worker died ATTEMPTS times
        name = type(error).__name__
        if name == "KilledWorker":
            return executors._failed(config, f"its worker died {ATTEMPTS + 1} times (crash, "
                                             "out of memory or lost node)")
        return executors._failed(config, f"{name}: {error}")
    if files is None:  # run under the shared root (already published), or postponed
        return result
    return dataclasses.replace(result, folder=_publish_files(root, config, files))


class _Clocks:
    """Cells announce their start with a `cell-start` event; a cell running past its hard
    limit is cancelled and its worker restarted (the only way to stop a running task)."""

    def __init__(self):
        self.seen = 0
        self.started: dict[str, tuple[float, str]] = {}  # config hash -> (start, worker)

    def cancel_overdue(self, client, futures: dict) -> None:
        events = client.get_events("cell-start")
        now = time.monotonic()
        for _, message in events[self.seen:]:  # a retry restarts its cell's clock
            self.started[message["key"]] = (now, message["worker"])
        self.seen = len(events)
        for future, config in futures.items():
            start = self.started.get(config.hash())
            if start and not future.done() and now - start[0] > executors.hard_limit(config):
                future.cancel()
                try:
                    client.restart_workers([start[1]])
                except Exception:  # a worker without a nanny cannot be restarted
                    pass
