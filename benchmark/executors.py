"""Running many cells: local worker processes (one thread each), one at a time under a
hard limit (`run_serial`, `run_guarded`), or a Dask cluster (benchmark.dask_executor).

Every cell has a time budget (RunConfig.time_budget; DEFAULT_TIME_BUDGET when unset):
the engine fails a run past it at the end of a step, and the executor kills a cell
stuck inside one step at budget + grace (`hard_limit`) and stores it as failed. A cell
whose worker dies (crash, out of memory, lost node) is retried once, then reported as
failed without storing anything (the next run tries again), and the matrix goes on.
Completed cells are written atomically, so an interrupted matrix resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable

import torch

from . import devices, host_template, isolated_defense, provenance, store, worker_hygiene
from .host_handoff import set_concurrent_runs
from .api import UsageError
from .cells import CellResult, publish_cell, run_cell
from .processes import single_thread
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
    publish_cell(temp, final, record)
    return CellResult(config, final, "failed", reason, record["summary"])


def _init_worker(started=None, gpu_slots=None) -> None:
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    single_thread()
    worker_hygiene.adopt_orphans()
    devices.pin_next(gpu_slots)  # --runs-per-device: this worker's GPU for its whole life
    global _STARTED
    _STARTED = started


_STARTED = None  # in a local worker process: the queue announcing which cell runs where


def _run_in_worker(config_dict: dict, root: str, deadline: float | None = None,
                   cell_options: dict | None = None) -> CellResult:
    if deadline is not None and _past(deadline):  # queued before the budget ran out
        return _postponed(RunConfig.from_dict(config_dict))
    if _STARTED is not None:
        _STARTED.put((RunConfig.from_dict(config_dict).hash(), os.getpid()))
    try:
        return run_cell(RunConfig.from_dict(config_dict), root, **(cell_options or {}))
    finally:
        worker_hygiene.after_cell()


# --- local processes ------------------------------------------------------------------

def run_local(configs: Iterable[RunConfig], root: Path | str, jobs: int,
              on_done: OnDone, gpus: list[int | None] | None = None,
              deadline: float | None = None, *, start_method: str = "spawn",
              cell_options: dict | None = None,
              usage_errors: bool = False) -> list[CellResult]:
    """Runs `configs` on `jobs` processes (started by `start_method`); calls on_done as
    each finishes. With `gpus` (benchmark.devices.worker_devices), one process per entry,
    pinned to that GPU.
    No cell starts after `deadline` (time.time()): those are returned as postponed.
    `cell_options` go to run_cell; with `usage_errors`, the UsageError a cell raises (bad
    parameters, nothing to resume) is raised here, else the cell is reported as failed.
    Each defense's cells run in worker processes of their own (one pool per defense, in
    the order the defenses first appear), so what a defense changes in its process (the
    registry's plugins, module globals) cannot reach another defense's cells."""
    results: list[CellResult] = []
    groups: dict[str, list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(config.defense, []).append(with_budget(config))
    if any(isolated_defense.wanted(config.device) for group in groups.values()
           for config in group):
        host_template.ensure_template()  # shared by the workers, which start no other
    for group in groups.values():
        results += _run_pools(group, root, jobs, on_done, gpus, deadline, start_method,
                              cell_options, usage_errors)
    return results


def _run_pools(pending: list[RunConfig], root: Path | str, jobs: int, on_done: OnDone,
               gpus, deadline: float | None, start_method: str, cell_options: dict | None,
               usage_errors: bool) -> list[CellResult]:
    """run_local for one defense's cells (a new pool, again after a worker died)."""
    results: list[CellResult] = []
    attempts: dict[str, int] = {}
    for variable in THREAD_VARIABLES:  # inherited by the spawned workers
        os.environ[variable] = "1"
    context = multiprocessing.get_context(start_method)
    while pending:
        set_concurrent_runs(min(jobs, len(pending)))  # inherited too (host_handoff)
        started, gpu_slots = context.Queue(), None
        if gpus and any(gpu is not None for gpu in gpus):
            jobs, gpu_slots = len(gpus), context.Queue()
            for gpu in gpus:
                gpu_slots.put(gpu)
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(pending))),
                                 mp_context=context, initializer=_init_worker,
                                 initargs=(started, gpu_slots)) as pool:
            futures = {pool.submit(_run_in_worker, c.to_dict(), str(root), deadline,
                                   cell_options): c for c in pending}
            pending = []
            running: dict[str, tuple[int, float]] = {}  # config hash -> (pid, start)
            killed: set[str] = set()
            try:
                while futures:
                    done, _ = wait(futures, timeout=POLL, return_when=FIRST_COMPLETED)
                    _drain(started, running)
                    if deadline is not None and _past(deadline):
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
                        except BaseException as error:
                            if isinstance(error, KeyboardInterrupt) or (
                                    usage_errors and isinstance(error, UsageError)):
                                raise  # the user's Ctrl-C; bad parameters
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
    """The same one cell at a time (jobs = 1), each under the hard limit (`run_guarded`).
    Raises the UsageError a cell raises."""
    configs = list(configs)
    single_thread()  # before the fork: the workers inherit it, and the compiled kernels
    if _guarded_start_method() == "fork":
        _share_provenance(configs)
        _share_task_data(configs)
    results = []
    for config in configs:
        result = _postponed(config) if _past(deadline) else run_guarded(config, root)
        results.append(result)
        on_done(result)
    return results


def _share_provenance(configs: list[RunConfig]) -> None:
    """Fills, once in this process, the caches of what every record says about the code
    and this process (code hashes, package versions, git state): forked workers inherit
    them instead of recomputing them for each cell. Reads files; runs no plugin code."""
    provenance.package_versions()
    provenance.git_state()
    for config in {(c.defense, c.attack, c.task): c for c in configs}.values():
        provenance.code_hashes(config)


def _share_task_data(configs: list[RunConfig]) -> None:
    """Decodes each task's data set once, in this process: forked workers inherit it
    (copy-on-write) instead of decoding it for each cell (about a second for MNIST-sized
    sets). A task that fails to load is left to fail in its cells, with its own message."""
    from .engine import load_task_data

    for task, data_dir in sorted({(c.task, c.data_dir) for c in configs
                                  if c.device == "cpu"}, key=str):
        try:
            load_task_data(task, data_dir)
        except Exception:  # noqa: BLE001 - reported by each cell that needs it
            continue


def run_guarded(config: RunConfig, root: Path | str, **cell_options) -> CellResult:
    """run_cell(config, root, **cell_options) with the config's time budget, in a worker
    process that is killed past the hard limit (the cell is then stored as failed): the
    code path of `run_local`, with one worker. Raises the UsageError the cell raises."""
    start_method = _guarded_start_method()
    if start_method is None:
        return run_cell(with_budget(config), root, **cell_options)
    (result,) = run_local([config], root, 1, lambda result: None, start_method=start_method,
                          cell_options=cell_options, usage_errors=True)
    return result


def _guarded_start_method() -> str | None:
    """How `run_guarded` starts its worker: forked on Linux, where it costs milliseconds
    and inherits this process's imports, plugins, settings and compiled kernels (spawned
    if this process has initialised CUDA, which a forked child cannot use); None (in this
    process, with only the engine's budget check) elsewhere, where fork is unsafe and a
    spawned worker would cost seconds per cell."""
    if not sys.platform.startswith("linux"):
        return None
    return "spawn" if torch.cuda.is_initialized() else "fork"


def prepare_results(root: Path | str, configs: Iterable[RunConfig], option: str) -> None:
    """Before any cell starts: raises UsageError naming `option` if a cell of `configs`
    cannot be written under `root`; removes what killed runs left there (temporary
    folders beside those cells and Dask marks whose process is gone)."""
    from .dask_executor import remove_stale_marks

    parents = sorted({store.cell_dir(root, config).parent for config in configs})
    problem = store.write_problem([Path(root), *parents])
    if problem:
        raise UsageError(f"cannot write results under {root}: {problem}; give {option} a "
                         "folder you can write to, or make it writable")
    for folder in parents:
        store.remove_stale_temp_dirs(folder)
    remove_stale_marks(root)


def __getattr__(name: str):
    """The Dask executor's names, also reachable from here (benchmark.dask_executor)."""
    if name in ("SHARED_MARK", "run_dask", "start_local_cluster", "write_mark",
                "remove_stale_marks", "_run_packed"):
        from . import dask_executor
        return getattr(dask_executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
