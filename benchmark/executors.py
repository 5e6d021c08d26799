"""Running many cells: local worker processes (one thread each) or a Dask cluster.

Every cell has a time budget (RunConfig.time_budget; DEFAULT_TIME_BUDGET when unset):
the engine fails a run past it at the end of a step, and the executor kills a cell
stuck inside one step at budget + grace (`hard_limit`) and stores it as failed. A cell
whose worker dies (crash, out of memory, lost node) is retried once, then reported as
failed without storing anything (the next run tries again), and the matrix goes on. Completed cells are written
atomically, so an interrupted matrix resumes where it stopped.

Dask (`run_dask`): the same cells on a cluster (`tcp://host:8786`, e.g. dask-jobqueue on
Slurm) or on a local cluster started here. The workers need the same code and data. A
worker that sees the results root (a shared file system: this process leaves a mark file
in it for the run) runs its cell there, like a local worker: checkpoints
(`--checkpoint-every`) survive its death and the retry resumes from the last one.
Otherwise it runs the cell in a scratch folder and sends the files back, and this process
publishes them.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import tempfile
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable

from . import checkpoint, devices, store
from .cells import CellResult, run_cell, single_thread
from .config import RunConfig

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DEFAULT_TIME_BUDGET = 3600.0   # seconds, for cells whose config sets none
ATTEMPTS = 2                   # a cell whose worker dies is run at most this many times
POLL = 0.5                     # seconds between checks of running cells' clocks

OnDone = Callable[[CellResult], None]
POSTPONED = "postponed"  # a cell not started because the matrix's budget had run out


def _postponed(config: RunConfig) -> CellResult:
    return CellResult(config, None, POSTPONED, "the matrix's --budget ran out before it started")


def _past(deadline: float | None) -> bool:
    """True once the wall clock passes `deadline` (time.time(); None: no deadline)."""
    return deadline is not None and time.time() > deadline


def with_budget(config: RunConfig) -> RunConfig:
    """The config with a time budget (not part of its hash: the cell is the same)."""
    if config.time_budget is not None:
        return config
    return dataclasses.replace(config, time_budget=DEFAULT_TIME_BUDGET)


def hard_limit(config: RunConfig) -> float:
    """When the executor kills a cell: its budget plus time to finish the step and store."""
    budget = with_budget(config).time_budget
    return budget + max(30.0, 0.25 * budget)


def _failed(config: RunConfig, reason: str) -> CellResult:
    return CellResult(config, None, "failed", reason)


def _timed_out(config: RunConfig, root: Path | str) -> CellResult:
    """Stores a cell killed past its hard limit as `failed` (as the engine stores one
    that ran past its budget), so the matrix and its resumption go on without it."""
    from .summary import summarize

    reason = (f"killed past its time budget ({hard_limit(config):g} s including grace) "
              "while inside one step")
    final = store.cell_dir(root, config)
    temp = store.new_temp_dir(final)
    for name in ("metrics.csv", "eval.csv"):
        (temp / name).write_text("")
    record = store.provenance_record(config)
    record.update(status="failed", reason=reason, started=store.now(), finished=store.now(),
                  steps_done=0, timings={"seconds": hard_limit(config)},
                  summary=summarize([], [], "failed", 0))
    store.write_run_json(temp, record)
    store.publish(temp, final)
    checkpoint.discard(checkpoint.folder_for(final))  # the cell is complete: nothing to resume
    return CellResult(config, final, "failed", reason, record["summary"])


def _init_worker(started=None, gpu_slots=None) -> None:
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    single_thread()
    devices.pin_next(gpu_slots)  # --runs-per-device: this worker's GPU for its whole life
    global _STARTED
    _STARTED = started


_STARTED = None  # in a local worker process: the queue announcing which cell runs where


def _run_in_worker(config_dict: dict, root: str, deadline: float | None = None) -> CellResult:
    if _past(deadline):  # queued before the budget ran out, reached after
        return _postponed(RunConfig.from_dict(config_dict))
    if _STARTED is not None:
        _STARTED.put((RunConfig.from_dict(config_dict).hash(), os.getpid()))
    return run_cell(RunConfig.from_dict(config_dict), root)


# --- local processes ------------------------------------------------------------------

def run_local(configs: Iterable[RunConfig], root: Path | str, jobs: int,
              on_done: OnDone, gpus: list[int | None] | None = None,
              deadline: float | None = None) -> list[CellResult]:
    """Runs `configs` on `jobs` spawned processes; calls on_done as each finishes. With
    `gpus` (benchmark.devices.worker_devices), one process per entry, pinned to that GPU.
    No cell starts after `deadline` (time.time()): those are returned as postponed."""
    pending = [with_budget(config) for config in configs]
    results: list[CellResult] = []
    attempts: dict[str, int] = {}
    for variable in THREAD_VARIABLES:  # inherited by the spawned workers
        os.environ[variable] = "1"
    context = multiprocessing.get_context("spawn")
    while pending:
        started, gpu_slots = context.Queue(), None
        if gpus and any(gpu is not None for gpu in gpus):
            jobs, gpu_slots = len(gpus), context.Queue()
            for gpu in gpus:
                gpu_slots.put(gpu)
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(pending))),
                                 mp_context=context, initializer=_init_worker,
                                 initargs=(started, gpu_slots)) as pool:
            futures = {pool.submit(_run_in_worker, c.to_dict(), str(root), deadline): c
                       for c in pending}
            pending = []
            running: dict[str, tuple[int, float]] = {}  # config hash -> (pid, start)
            killed: set[str] = set()
            try:
                while futures:
                    done, _ = wait(futures, timeout=POLL, return_when=FIRST_COMPLETED)
                    _drain(started, running)
                    if _past(deadline):
                        for future in [f for f in futures if f.cancel()]:
                            done.add(future)
                    for future in done:
                        config = futures.pop(future)
                        key = config.hash()
                        if future.cancelled():
                            result = _postponed(config)
                            results.append(result)
                            on_done(result)
                            continue
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            if key in killed:
                                result = _timed_out(config, root)
                            else:
                                if key in running and not killed:  # running when a worker
                                    attempts[key] = attempts.get(key, 0) + 1  # died by itself
                                if attempts.get(key, 0) < ATTEMPTS:
                                    pending.append(config)
                                    continue
                                result = _failed(config, f"its worker process died {ATTEMPTS} "
                                                         "times (crash or out of memory)")
                        except Exception as error:
                            result = _failed(config, f"{type(error).__name__}: {error}")
                        running.pop(key, None)
                        results.append(result)
                        on_done(result)
                    _kill_overdue(futures, running, killed)
            except BaseException:
                for future in futures:
                    future.cancel()
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                raise
    return results


def _drain(started, running: dict) -> None:
    while True:
        try:
            key, pid = started.get_nowait()
        except queue.Empty:
            return
        running[key] = (pid, time.monotonic())


def _kill_overdue(futures: dict, running: dict, killed: set) -> None:
    configs = {config.hash(): config for config in futures.values()}
    for key, (pid, start) in running.items():
        if key in configs and key not in killed and \
                time.monotonic() - start > hard_limit(configs[key]):
            killed.add(key)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_serial(configs: Iterable[RunConfig], root: Path | str,
               on_done: OnDone, deadline: float | None = None) -> list[CellResult]:
    """The same in this process (jobs = 1): no process start-up cost, and only the
    engine's own budget check (a step that never returns is not interrupted)."""
    single_thread()
    results = []
    for config in configs:
        result = _postponed(config) if _past(deadline) else run_cell(with_budget(config), root)
        results.append(result)
        on_done(result)
    return results


# --- Dask -------------------------------------------------------------------------------

SHARED_MARK = ".dask-run-"  # + a token: the file by which a worker recognises the root


def _run_packed(config_dict: dict, root: str | None = None, mark: str | None = None,
                deadline: float | None = None) -> tuple[CellResult, dict[str, bytes] | None]:
    """On a Dask worker: runs the cell under `root` if this worker sees the run's mark
    file there (returns no files: the cell is published), else in a scratch folder
    (returns its files); postponed without running once `deadline` has passed."""
    from distributed import get_worker

    config = RunConfig.from_dict(config_dict)
    if _past(deadline):
        return _postponed(config), None
    _init_worker()
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
    store.publish(temp, final)
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
    for config in map(with_budget, configs):
        folder = store.cell_dir(root, config)
        if store.is_complete(folder, config):
            record = store.read_run(folder)
            result = CellResult(config, folder, "skipped", record["reason"], record["summary"])
            results.append(result)
            on_done(result)
        else:
            todo.append(config)
    root = Path(root).resolve()
    mark = root / f"{SHARED_MARK}{uuid.uuid4().hex}"
    root.mkdir(parents=True, exist_ok=True)
    mark.touch()
    futures = {client.submit(_run_packed, config.to_dict(), str(root), mark.name, deadline,
                             key=f"cell-{config.hash()}", pure=False): config
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
        return _timed_out(config, root)
    try:
        result, files = future.result()
    except Exception as error:  # KilledWorker: its worker died ATTEMPTS times
        name = type(error).__name__
        if name == "KilledWorker":
            return _failed(config, f"its worker died {ATTEMPTS + 1} times (crash, out of "
                                   "memory or lost node)")
        return _failed(config, f"{name}: {error}")
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
            if start and not future.done() and now - start[0] > hard_limit(config):
                future.cancel()
                try:
                    client.restart_workers([start[1]])
                except Exception:  # a worker without a nanny cannot be restarted
                    pass
