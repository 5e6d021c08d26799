"""Running one cell end to end: engine → metrics → result store."""
from __future__ import annotations

import shutil
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint, defense_catalog, engine, plugins, store
from .isolated_defense import wanted
from .api import UsageError
from .config import RunConfig
from .processes import single_thread  # noqa: F401 (cli/profile_step imports it from here)
from .summary import summarize


@dataclass
class CellResult:
    config: RunConfig
    folder: Path | None
    status: str                 # ok | failed | diverged | skipped | postponed (budget)
    reason: str | None = None
    summary: dict | None = None
    seconds: float = 0.0


def completed(config: RunConfig, root: Path | str) -> CellResult | None:
    """The stored cell as a `skipped` result if it is complete under this code's behaviour
    versions (nothing to run), else None."""
    final = store.cell_dir(root, config)
    if not store.is_complete(final, config):
        return None
    record = store.read_run(final)
    return CellResult(config, final, "skipped", record["reason"], record["summary"])


def publish_cell(temp: Path, final: Path, record: dict | None = None) -> None:
    """Puts a finished cell in place: seals `record` into temp's run.json (None: temp
    holds it already), moves temp to `final` and drops the cell's checkpoints (a complete
    cell has nothing to resume). Every executor publishes through here."""
    if record is not None:
        store.write_run_json(temp, record)
    store.publish(temp, final)
    checkpoint.discard(checkpoint.folder_for(final))


def run_cell(config: RunConfig, root: Path | str, resume: bool = True, *,
             require_checkpoint: bool = False, keep_checkpoint: bool = False,
             stream_key: bytes | None = None) -> CellResult:
    """Runs one cell and publishes its folder. Skips it if already complete (resume).

    With `resume`, a run interrupted after a checkpoint (config.checkpoint_every)
    continues from its last one and writes the same files as a run done in one go; a
    checkpoint of another config or code is set aside (the run starts from step 0), or
    refused with UsageError when `require_checkpoint` (nothing to resume is an error too).
    `keep_checkpoint` leaves the final state in the result folder (`checkpoint.pt`).

    `stream_key` keys the shuffle's and the defense's random streams (streams.keyed_seed):
    `verify --keyed`'s trusted re-run, into a scratch folder; it neither resumes nor saves
    checkpoints, which a later run of the same config could take for its own.

    Raises UsageError for invalid parameters (a defense's or attack's check), before
    anything is written. Any other error inside the run becomes a `failed` cell.
    """
    if stream_key is not None and (resume or require_checkpoint or keep_checkpoint):
        raise ValueError("a keyed re-run starts from step 0 and keeps no checkpoint")
    done = completed(config, root) if resume else None
    if done:
        return done
    final = store.cell_dir(root, config)
    record = store.provenance_record(config)  # before the run: a broken plugin name fails here
    checkpoints = checkpoint.folder_for(final)
    saved = _saved_state(config, record["versions"], checkpoints, require_checkpoint) \
        if resume else None
    started, clock, cpu_clock = store.now(), time.monotonic(), time.process_time()
    previous_seconds = saved["seconds"] if saved else 0.0
    metric_rows, eval_rows = [], []
    defense_cpu = 0.0  # the CPU time of the defense's own process, if it has one
    with plugins.noting_ctrl_c():
        try:
            isolated = wanted(config.device)
            with defense_catalog.imported_here(not isolated):
                simulation = engine.Simulation(config, isolate_defense=isolated,
                                               stream_key=stream_key)
            if saved:
                simulation.load_state_dict(saved["simulation"])
        except UsageError:
            raise
        except BaseException as error:  # sys.exit() in a task too; not the user's Ctrl-C
            if not plugins.fails_the_cell(error):
                raise
            simulation, setup_error = None, error
    temp = store.new_temp_dir(final)
    metrics_log, eval_log = store.CsvLog(temp / "metrics.csv"), store.CsvLog(temp / "eval.csv")

    def on_step(row):
        metric_rows.append(row)
        metrics_log(row)

    def on_eval(row):
        eval_rows.append(row)
        eval_log(row)

    def on_checkpoint(sim):
        seconds = previous_seconds + time.monotonic() - clock
        checkpoint.save(checkpoints, checkpoint.payload(config, record["versions"], sim,
                                                        metric_rows, eval_rows, seconds))

    for row in saved["metrics"] if saved else ():
        on_step(row)
    for row in saved["eval"] if saved else ():
        on_eval(row)
    with plugins.noting_ctrl_c():
        try:
            if simulation is None:
                outcome = engine.Outcome(
                    "failed", f"setup raised {type(setup_error).__name__}: {setup_error}")
            else:
                outcome = engine.run(config, on_step, on_eval, simulation,
                                     on_checkpoint if stream_key is None else None)
                if keep_checkpoint:
                    seconds = previous_seconds + time.monotonic() - clock
                    checkpoint.write_atomic(temp / checkpoint.KEPT_NAME, checkpoint.payload(
                        config, record["versions"], simulation, metric_rows, eval_rows,
                        seconds))
        except BaseException as error:  # a harness or plugin bug must fail this cell only
            if not plugins.fails_the_cell(error):
                raise
            last = traceback.extract_tb(error.__traceback__)[-1]
            outcome = engine.Outcome("failed", f"{type(error).__name__}: {error} "
                                               f"({Path(last.filename).name}:{last.lineno})")
        finally:
            metrics_log.close()
            eval_log.close()
            if simulation is not None:
                defense_cpu = simulation.close()
    strays = _remove_strays(temp)
    if strays:
        outcome = engine.Outcome("failed", f"a plugin wrote into the cell's folder ({strays}); "
                                           "only the harness writes there", outcome.steps_done)
    if outcome.status == "failed" and config.device.startswith("cuda"):
        torch.cuda.empty_cache()  # e.g. after out of memory: the next cell gets the memory
    summary = summarize(metric_rows, eval_rows, outcome.status, outcome.steps_done)
    record.update(status=outcome.status, reason=outcome.reason, started=started,
                  finished=store.now(), steps_done=outcome.steps_done,
                  timings={"seconds": round(previous_seconds + time.monotonic() - clock, 3),
                           # CPU time of this process and of the defense's own, their
                           # polling for each other left out (a resumed run: since it resumed)
                           "cpu_seconds": round(time.process_time() - cpu_clock + defense_cpu,
                                                3)},
                  summary=summary)
    if saved:
        record["resumed_from_step"] = saved["step"]
    publish_cell(temp, final, record)
    return CellResult(config, final, outcome.status, outcome.reason, summary,
                      record["timings"]["seconds"])


HARNESS_FILES = {"metrics.csv", "eval.csv", checkpoint.KEPT_NAME}  # before run.json, trace


def _remove_strays(temp: Path) -> str:
    """Removes what the harness did not write into a cell's temporary folder (a plugin that
    found it) and names it, or returns "" if nothing."""
    strays = sorted(path for path in temp.iterdir() if path.name not in HARNESS_FILES)
    for path in strays:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return ", ".join(path.name for path in strays[:5]) + (" ..." if len(strays) > 5 else "")


def _saved_state(config: RunConfig, versions: dict, folder: Path, required: bool
                 ) -> dict | None:
    """The last checkpoint of this run, or None to start from step 0."""
    path = checkpoint.latest(folder)
    if path is None:
        if required:
            raise UsageError(f"nothing to resume: no checkpoint of this configuration in "
                             f"{folder}; run it first with --checkpoint-every K"
                             f"{_other_checkpoints(folder)}")
        return None
    try:
        return checkpoint.load(path, config, versions)
    except checkpoint.CheckpointMismatch as refusal:
        if required:
            raise UsageError(f"cannot resume: {refusal}") from None
        warnings.warn(f"{refusal}; starting from step 0", stacklevel=2)
        return None


def _other_checkpoints(folder: Path) -> str:
    """A hint naming checkpoints of the same cell written with other settings."""
    cell = folder.name.rsplit("-", 1)[0] + "-"
    others = sorted(path.name for path in folder.parent.glob(f"{checkpoint.PREFIX}*")
                    if path.name.startswith(cell) and path != folder
                    and checkpoint.latest(path) is not None) if folder.parent.is_dir() else []
    if not others:
        return ""
    return (f" (this cell has checkpoints with other settings, e.g. lr or steps: "
            f"{', '.join(others)}; resume with the settings they were written with)")
