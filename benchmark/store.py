"""The result store: one folder per cell, written under a temporary name and
renamed into place only when complete, so a half-written cell is never read.

    <root>/<profile>/<task>/<defense>/<attack>/<placement>-f<f>[-r<f_real>]-s<seed>-<hash>/
        run.json      provenance, resolved config, status, summary (run.schema.json)
        metrics.csv   one row per step (benchmark.metrics columns); not committed (bulky)
        eval.csv      step, accuracy, loss
        trace.csv.gz  the compact per-step trace the leaderboard's plots read (committed)

run.json is sealed when written: `files` holds the SHA-256 of each data file's content
(the full metrics.csv included, so `verify` can check a re-run against it even where
metrics.csv is not committed) and `record_hash` the SHA-256 of the record itself, so a
number edited by hand after the run is detected (`seal_problem`).
"""
from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import jsonschema
import pandas as pd

from . import behaviour, provenance
from .config import RunConfig

SCHEMA_VERSION = 2  # 2: `versions` (behaviour versions) recorded
SCHEMA = json.loads((Path(__file__).parent / "run.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)  # built once: validate() re-checks the schema
COMPLETE_STATUSES = ("ok", "failed", "diverged")
TEMP_PREFIX = ".tmp-"
TRACE = "trace.csv.gz"
DATA_FILES = ("eval.csv", "metrics.csv", TRACE)
TRACE_COLUMNS = ("step", "loss", "honest_ratio", "sampled_ratio", "bound_squared", "condition_held",
                 "byzantine_selected",
                 "server_drift", "server_drift_ratio")  # replicated servers' runs only
TRACE_ROWS = 200  # longer runs keep every k-th step (and the last)


def _safe(label: str) -> str:
    return label.replace(":", "@").replace(",", "&").replace("/", "_")


def cell_dir(root: Path | str, config: RunConfig) -> Path:
    real = "" if config.f_real is None or config.f_real == config.f else f"-r{config.f_real}"
    leaf = f"{config.momentum_at}-f{config.f}{real}-s{config.seed}-{config.hash()[:8]}"
    return (Path(root) / config.profile / config.task / _safe(config.defense)
            / _safe(config.attack) / leaf)


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CsvLog:
    """Appends rows to a CSV file whose header is the first row's keys."""

    def __init__(self, path: Path):
        self.handle = open(path, "w", newline="")
        self.writer = csv.writer(self.handle, lineterminator="\n")
        self.header: list[str] | None = None

    def __call__(self, row: dict) -> None:
        if self.header is None:
            self.header = list(row)
            self.writer.writerow(self.header)
        self.writer.writerow([_format(row[key]) for key in self.header])

    def close(self) -> None:
        self.handle.close()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_temp_dir(final: Path) -> Path:
    """This process's temporary folder for `final`, empty; the temporary folders of the
    same cell left by processes of this machine that no longer run are removed."""
    temp = final.parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}"
    remove_stale_temp_dirs(final.parent, final.name)
    shutil.rmtree(temp, ignore_errors=True)  # this pid's, from a process long gone
    temp.mkdir(parents=True)
    return temp


def temp_dir_pid(path: Path) -> int | None:
    """The process that owns a temporary folder (.tmp-<cell>-<pid> while a run writes its
    cell, .tmp-old-<cell>-<pid> while `publish` replaces an older one); None otherwise."""
    if not path.name.startswith(TEMP_PREFIX):
        return None
    pid = path.name.rsplit("-", 1)[-1]
    return int(pid) if pid.isdigit() else None


def remove_stale_temp_dirs(folder: Path, cell: str | None = None) -> None:
    """Removes the temporary folders in `folder` (those of the cell folder named `cell`, or
    all) whose process no longer runs on this machine: left by a run killed while writing
    its cell, or between the two renames of `publish`."""
    if not folder.is_dir():
        return
    patterns = [f"{TEMP_PREFIX}{cell}-*", f"{TEMP_PREFIX}old-{cell}-*"] if cell \
        else [f"{TEMP_PREFIX}*"]
    for pattern in patterns:
        for stale in folder.glob(pattern):
            pid = temp_dir_pid(stale)
            if pid is not None and not process_exists(pid):
                shutil.rmtree(stale, ignore_errors=True)


def process_exists(pid: int) -> bool:
    """True if a process `pid` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def publish(temp: Path, final: Path) -> None:
    """Atomically moves a finished cell folder into place, replacing an older one. Killed
    between the two renames, it leaves `final` missing (the cell is run again) and the old
    folder aside, which the next run of the cell removes (`remove_stale_temp_dirs`)."""
    old = None
    if final.exists():
        old = final.parent / f"{TEMP_PREFIX}old-{final.name}-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)  # this pid's, from a process long gone
        os.rename(final, old)
    os.rename(temp, final)
    if old is not None:
        shutil.rmtree(old)


def write_problem(folders: Iterable[Path]) -> str | None:
    """Why cells cannot be written into `folders` (None: they can): each folder, or the
    nearest one above it that exists, must take a new file. Tried for real (a file made
    and removed): permission bits say nothing of read-only file systems, ACLs or root."""
    tried = set()
    for folder in folders:
        existing = Path(folder).absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing in tried:
            continue
        tried.add(existing)
        if not existing.is_dir():
            return f"{existing} is a file, not a folder"
        try:
            handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        except OSError as error:
            return f"cannot create files in {existing} ({error.strerror or error})"
        os.close(handle)
        os.unlink(probe)
    return None


def write_trace(folder: Path) -> None:
    """trace.csv.gz: a few metrics columns, at most TRACE_ROWS rows, 5 significant digits,
    gzip without a timestamp (same metrics, same bytes)."""
    source = folder / "metrics.csv"
    if not source.exists() or source.stat().st_size == 0:  # a run that failed at setup
        return
    metrics = pd.read_csv(source)
    if metrics.empty:
        return
    stride = max(1, math.ceil(len(metrics) / TRACE_ROWS))
    keep = sorted(set(range(0, len(metrics), stride)) | {len(metrics) - 1})
    trace = metrics.iloc[keep][[c for c in TRACE_COLUMNS if c in metrics.columns]]
    text = trace.to_csv(index=False, float_format="%.5g", lineterminator="\n")
    (folder / TRACE).write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def content_hash(path: Path | str) -> str:
    """SHA-256 of a file's content (of the decompressed content for .gz files)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return hashlib.sha256(gzip.decompress(data) if str(path).endswith(".gz")
                          else data).hexdigest()


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "record_hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_run_json(folder: Path, record: dict) -> None:
    """Writes the trace, then run.json sealed with the data files' hashes and its own."""
    write_trace(folder)
    record = {**record, "files": {name: content_hash(folder / name) for name in DATA_FILES
                                  if (folder / name).exists()}}
    record["record_hash"] = record_hash(record)
    VALIDATOR.validate(record)
    (folder / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def provenance_record(config: RunConfig) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "versions": behaviour.of_config(config),
        "code": provenance.code_hashes(config),
        "packages": provenance.package_versions(),
        "git": provenance.git_state(),
        "device": provenance.device_description(config.device),
    }


# --- reading ----------------------------------------------------------------------

_SHAPE = {"config": dict, "config_hash": str, "status": str, "summary": dict, "files": dict,
          "record_hash": str, "timings": dict, "schema_version": int}


def shape_problem(record) -> str | None:
    """The part of the schema that reading a record relies on (types of the top-level fields
    used, the config's identity fields), checked in microseconds: jsonschema takes about a
    millisecond per record, which the leaderboard cannot pay for 100,000 cells. The seal
    check that follows catches any edit made after the run."""
    if not isinstance(record, dict):
        return "run.json is not an object"
    for key, kind in _SHAPE.items():
        if not isinstance(record.get(key), kind):
            return f"run.json lacks {key!r} (or it is not a {kind.__name__})"
    if record["schema_version"] not in (1, SCHEMA_VERSION):
        return f"schema version {record['schema_version']} is not one this code reads"
    if record["schema_version"] >= 2 and not isinstance(record.get("versions"), dict):
        return "run.json lacks its behaviour versions"
    missing = [key for key in SCHEMA["properties"]["config"]["required"]
               if key not in record["config"]]
    if missing:
        return f"its config lacks {', '.join(missing)}"
    return None


def check_run(folder: Path, full: bool = True) -> tuple[dict | None, str | None]:
    """(run.json of a complete cell folder, None) or (None, why it cannot be read).
    `full`: against the whole schema (jsonschema); else `shape_problem` only."""
    if folder.name.startswith(TEMP_PREFIX):
        return None, "a temporary folder (its run was interrupted)"
    try:
        record = json.loads((folder / "run.json").read_text())
    except OSError as error:
        return None, f"no readable run.json ({error.strerror})"
    except ValueError as error:
        return None, f"run.json is not valid JSON ({error})"
    if full:
        try:
            VALIDATOR.validate(record)
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "top level"
            return None, f"run.json fails its schema at {where}: {error.message}"
    else:
        problem = shape_problem(record)
        if problem:
            return None, f"run.json fails its schema: {problem}"
    if record["status"] not in COMPLETE_STATUSES:
        return None, f"status {record['status']!r} is not a finished run"
    return record, None


def read_run(folder: Path) -> dict | None:
    """The run.json of a complete cell folder, or None if absent, unreadable or invalid."""
    return check_run(folder)[0]


def seal_problem(folder: Path, record: dict) -> str | None:
    """Why this folder's files or run.json differ from what was sealed at write time.

    A data file listed in run.json must match its hash; metrics.csv may be absent (it
    is not committed), eval.csv and the trace may not."""
    if record_hash(record) != record["record_hash"]:
        return "run.json was edited after its run (record hash mismatch)"
    base = os.fspath(folder)  # plain strings: pathlib costs more than the hashing here
    for name, expected in sorted(record["files"].items()):
        try:
            actual = content_hash(os.path.join(base, name))
        except FileNotFoundError:
            if name == "metrics.csv":
                continue
            return f"{name} is missing"
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            return f"{name} is unreadable ({error})"
        if actual != expected:
            return f"{name} was edited after its run (content hash mismatch)"
    return None


def is_complete(folder: Path, config: RunConfig) -> bool:
    """True if `folder` holds a finished run of exactly `config` whose behaviour versions
    are the code's (a refactor keeps it complete; a behaviour change does not)."""
    record = read_run(folder)
    return (record is not None and record["config_hash"] == config.hash()
            and behaviour.stale_reason(record, behaviour.of_config(config)) is None)


def cell_folders(root: Path | str) -> Iterator[Path]:
    for run_json in sorted(Path(root).rglob("run.json")):
        if not any(part.startswith(TEMP_PREFIX) for part in run_json.parent.parts):
            yield run_json.parent


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per complete cell under `root`: config fields, status, timings, summary."""
    rows = []
    for folder in cell_folders(root):
        record = read_run(folder)
        if record is None:
            continue
        row = {"path": str(folder), "status": record["status"], "reason": record.get("reason"),
               "config_hash": record["config_hash"], **record["config"],
               **{f"summary_{k}": v for k, v in record.get("summary", {}).items()
                  if not isinstance(v, (dict, list))},
               "seconds": record["timings"].get("seconds")}
        row["lr_schedule"] = json.dumps(row["lr_schedule"])
        rows.append(row)
    return pd.DataFrame(rows)


def load_metrics(folder: Path | str) -> pd.DataFrame:
    return pd.read_csv(Path(folder) / "metrics.csv")


def load_eval(folder: Path | str) -> pd.DataFrame:
    """The evaluations; none (with their columns) for a run that failed before its first."""
    path = Path(folder) / "eval.csv"
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=["step", "accuracy", "loss"])
    return pd.read_csv(path)


def load_trace(folder: Path | str) -> pd.DataFrame:
    """The compact per-step trace (TRACE_COLUMNS, every k-th step): what plots read."""
    return pd.read_csv(Path(folder) / TRACE)
