"""Issue 22, tests with teeth: the result store publishes whole folders only, and a sealed
folder that lost one of its listed files is never read as complete.

Public entry points only: `cells.run_cell`, `store.publish`, `store.check_run`,
`store.seal_problem`, `store.is_complete`, `store.load_runs`, `leaderboard.collect`.
"""
import os
import shutil

import pytest

from benchmark import store
from benchmark.cells import run_cell
from benchmark.config import make_config
from tests.leaderboard_fixtures import (cell_folder, reasons, results,  # noqa: F401
                                        tiny, tiny_profile_dir, tiny_results)

CELL = dict(task="digits", defense="median", attack="little", steps=2, eval_every=1,
            batch_size=8)


class Interrupted(Exception):
    """Stands for the process being killed at that point."""


# --- 2. publication through a temporary name and a rename -----------------------------
# Mutations killed: `publish` copying the files into the final folder one by one (in place)
# instead of renaming the temporary folder; a cell written directly into its final folder.

def written_folder(tmp_path, name, files):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def test_publish_renames_the_temporary_folder_into_place(tmp_path, monkeypatch):
    final = tmp_path / "cells" / "cell"
    final.parent.mkdir()
    temp = written_folder(tmp_path / "cells", f"{store.TEMP_PREFIX}cell-1",
                          {"eval.csv": "a", "metrics.csv": "b", "run.json": "{}"})
    inode = os.stat(temp).st_ino

    def no_copy(*args, **kwargs):
        raise Interrupted("killed while copying")
    for name in ("copy", "copy2", "copyfile", "copytree", "copyfileobj"):
        monkeypatch.setattr(shutil, name, no_copy)
    store.publish(temp, final)
    assert not temp.exists()
    assert os.stat(final).st_ino == inode  # the very folder, moved: nothing was rewritten
    assert sorted(p.name for p in final.iterdir()) == ["eval.csv", "metrics.csv", "run.json"]


def test_publish_replaces_an_older_folder_as_a_whole(tmp_path):
    final = written_folder(tmp_path, "cell", {"eval.csv": "old", "checkpoint.pt": "old"})
    temp = written_folder(tmp_path, f"{store.TEMP_PREFIX}cell-1", {"eval.csv": "new",
                                                                   "run.json": "{}"})
    store.publish(temp, final)
    assert sorted(p.name for p in final.iterdir()) == ["eval.csv", "run.json"]
    assert (final / "eval.csv").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell"]  # the old one removed


def test_a_cell_killed_after_its_last_file_has_no_final_folder(tmp_path, monkeypatch):
    """Killed after run.json, the last file, is written but before publication: the cell's
    folder must not exist under its final name, nothing is read as complete, and the next
    run redoes the cell."""
    config = make_config(**CELL)
    final = store.cell_dir(tmp_path, config)
    # store.write_run_json is how cells.run_cell writes run.json, its last file: patched
    # here (a public name of the store, but an implementation detail of run_cell)
    real_write = store.write_run_json

    def write_then_die(folder, record):
        real_write(folder, record)
        assert (folder / "run.json").exists() and folder != final
        raise Interrupted("killed after writing run.json")
    monkeypatch.setattr(store, "write_run_json", write_then_die)
    with pytest.raises(Interrupted):
        run_cell(config, tmp_path)
    assert not final.exists()
    assert not store.is_complete(final, config)
    assert store.load_runs(tmp_path).empty
    leftovers = [p.name for p in final.parent.iterdir()]
    assert leftovers and all(name.startswith(store.TEMP_PREFIX) for name in leftovers)
    monkeypatch.setattr(store, "write_run_json", real_write)
    result = run_cell(config, tmp_path)
    assert result.status == "ok" and result.folder == final
    assert store.is_complete(final, config)
    assert len(store.load_runs(tmp_path)) == 1


def test_a_cell_is_never_seen_under_its_final_name_while_it_runs(tmp_path, monkeypatch):
    config = make_config(**CELL)
    final = store.cell_dir(tmp_path, config)
    seen = []
    # store.CsvLog writes metrics.csv and eval.csv while the run goes (an implementation
    # detail of cells.run_cell, patched to look at the disk at each row)
    real_log = store.CsvLog.__call__

    def log(self, row):  # every metrics and evaluation row written during the run
        seen.append(final.exists())
        real_log(self, row)
    monkeypatch.setattr(store.CsvLog, "__call__", log)
    assert run_cell(config, tmp_path).status == "ok"
    assert seen and not any(seen)
    assert final.exists()


# --- 8. the seal: every listed file must be there --------------------------------------
# Mutation killed: `seal_problem` accepting a folder whose listed eval.csv (or trace) is
# missing, as it rightly accepts a missing metrics.csv (not committed).

@pytest.fixture
def sealed(tmp_path):
    result = run_cell(make_config(**CELL), tmp_path)
    record, problem = store.check_run(result.folder)
    assert problem is None and store.seal_problem(result.folder, record) is None
    assert {"eval.csv", "metrics.csv", store.TRACE} <= set(record["files"])
    return result.folder, record


@pytest.mark.parametrize("name", ["eval.csv", store.TRACE])
def test_a_missing_listed_file_breaks_the_seal(sealed, name):
    folder, record = sealed
    (folder / name).unlink()
    assert store.seal_problem(folder, record) == f"{name} is missing"


def test_only_metrics_csv_may_be_missing(sealed):
    folder, record = sealed
    (folder / "metrics.csv").unlink()
    assert store.seal_problem(folder, record) is None


def test_the_leaderboard_rejects_a_cell_without_its_eval_csv(results, tiny):
    folder = cell_folder(results, "median", "little", "worker", 1)
    (folder / "eval.csv").unlink()
    found = reasons(results, tiny)
    assert found[folder.relative_to(results).as_posix()] == "hand-edited: eval.csv is missing"
    shutil.rmtree(folder)  # a missing cell is reported as such, not as a malformed one
    assert folder.relative_to(results).as_posix() not in reasons(results, tiny)


# --- measured with mutmut (docs/mutation-testing.md, "Measured: benchmark/store.py") ----
# Each test below pins a behaviour of the store that mutants of benchmark/store.py changed
# without any test noticing: where a cell is written, what its temporary folders are
# called and when they are cleaned up, what the trace keeps, what the seal covers, and the
# reasons a cell is not read (the leaderboard and `validate` show them to the user).

import dataclasses  # noqa: E402
import gzip  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pandas as pd  # noqa: E402

from benchmark import behaviour  # noqa: E402


@pytest.fixture(scope="module")
def ran_cell(tmp_path_factory):
    """One finished cell, run once for the module; tests work on copies (`cell_copy`)."""
    root = tmp_path_factory.mktemp("one-cell")
    result = run_cell(make_config(**CELL), root)
    assert result.status == "ok"
    return result.folder


@pytest.fixture
def cell_copy(ran_cell, tmp_path):
    folder = tmp_path / "copy" / ran_cell.name
    shutil.copytree(ran_cell, folder)
    return folder


def run_json(folder):
    return json.loads((folder / "run.json").read_text())


def rewrite(folder, record):
    """run.json replaced by `record`, written as the store writes it (no new seal)."""
    (folder / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def alive_child():
    """A running process (a sleeping child, ended after the test). A process of our own,
    so that a mutant sending it a real signal hurts nothing else."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def alive_pid(alive_child):
    return alive_child.pid


def dead_pid():
    """The id of a process that has ended (a child, waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# where a cell lives

def test_cell_dir_names_every_identity_field():
    config = make_config(**CELL)
    leaf = f"worker-f{config.f}-s{config.seed}-{config.hash()[:8]}"
    assert store.cell_dir("root", config) == \
        store.Path("root", config.profile, "digits", "median", "little", leaf)


def test_cell_dir_marks_a_real_f_only_when_it_differs_from_f():
    config = make_config(**{**CELL, "f": 2, "f_real": 1})
    assert store.cell_dir("r", config).name.startswith("worker-f2-r1-s")
    same = make_config(**{**CELL, "f": 2, "f_real": 2})
    assert store.cell_dir("r", same).name == f"worker-f2-s{same.seed}-{same.hash()[:8]}"


def test_cell_dir_keeps_option_labels_in_one_folder_name():
    config = make_config(**{**CELL, "defense": "krum:m=2,squared=false"})
    assert store.cell_dir("r", config).parent.parent.name == "krum@m=2&squared=false"
    slashed = dataclasses.replace(config, attack="plugins/x:a=1")
    folder = store.cell_dir("r", slashed)
    assert folder.parent.name == "plugins_x@a=1"
    assert len(folder.parts) == len(store.cell_dir("r", config).parts)


# the files a run writes

def test_csv_log_writes_the_first_rows_keys_then_exact_values(tmp_path):
    log = store.CsvLog(tmp_path / "log.csv")
    log({"step": 0, "loss": 0.1 + 0.2, "name": "a"})
    log({"name": "b", "loss": 1 / 3, "step": 1})  # another key order: same columns
    log.close()
    assert (tmp_path / "log.csv").read_bytes() == \
        b"step,loss,name\n0,0.30000000000000004,a\n1,0.3333333333333333,b\n"


def test_now_is_utc_to_the_second():
    stamp = store.now()
    parsed = store.datetime.datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == store.datetime.timedelta(0)
    assert parsed.microsecond == 0 and len(stamp) == len("2026-01-01T00:00:00+00:00")


# temporary folders

def test_new_temp_dir_is_named_after_the_cell_and_this_process(tmp_path):
    final = tmp_path / "cells" / "cell"
    temp = store.new_temp_dir(final)
    assert temp == final.parent / f"{store.TEMP_PREFIX}cell-{os.getpid()}"
    assert temp.is_dir() and not any(temp.iterdir()) and not final.exists()
    assert store.temp_dir_pid(temp) == os.getpid()


def test_new_temp_dir_empties_this_processes_leftover(tmp_path):
    final = tmp_path / "cell"
    leftover = written_folder(tmp_path, f"{store.TEMP_PREFIX}cell-{os.getpid()}",
                              {"eval.csv": "stale"})
    assert store.new_temp_dir(final) == leftover
    assert not any(leftover.iterdir())


def test_new_temp_dir_removes_only_dead_processes_leftovers_of_its_cell(tmp_path, alive_pid):
    dead, alive = dead_pid(), alive_pid
    names = [f"{store.TEMP_PREFIX}cell-{dead}", f"{store.TEMP_PREFIX}old-cell-{dead}",
             f"{store.TEMP_PREFIX}cell-{alive}", f"{store.TEMP_PREFIX}other-{dead}", "cell-x"]
    for name in names:
        written_folder(tmp_path, name, {"eval.csv": "x"})
    store.new_temp_dir(tmp_path / "cell")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{store.TEMP_PREFIX}cell-{alive}", f"{store.TEMP_PREFIX}other-{dead}", "cell-x",
         f"{store.TEMP_PREFIX}cell-{os.getpid()}"])


def test_remove_stale_temp_dirs_of_a_whole_folder(tmp_path, alive_pid):
    dead, alive = dead_pid(), alive_pid
    names = [f"{store.TEMP_PREFIX}a-{dead}", f"{store.TEMP_PREFIX}old-b-{dead}",
             f"{store.TEMP_PREFIX}c-{alive}", f"{store.TEMP_PREFIX}d-x", f"e-{dead}"]
    for name in names:
        written_folder(tmp_path, name, {"run.json": "{}"})
    store.remove_stale_temp_dirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    store.remove_stale_temp_dirs(tmp_path / "absent")  # no folder: nothing to do


def test_temp_dir_pid_reads_the_owner_of_temporary_folders_only():
    assert store.temp_dir_pid(store.Path(f"{store.TEMP_PREFIX}a-b-123")) == 123
    assert store.temp_dir_pid(store.Path(f"{store.TEMP_PREFIX}old-a-7")) == 7
    assert store.temp_dir_pid(store.Path("worker-f2-s1-123")) is None
    assert store.temp_dir_pid(store.Path(f"{store.TEMP_PREFIX}a-b")) is None


def test_process_exists(alive_child):
    assert store.process_exists(alive_child.pid)
    with pytest.raises(subprocess.TimeoutExpired):  # only asked, not signalled: still runs
        alive_child.wait(timeout=0.5)
    assert not store.process_exists(dead_pid())
    assert store.process_exists(2 ** 80)  # not a pid this system can check: assumed alive


def test_publish_into_place_over_an_older_cell_leaves_no_temporary_folder(tmp_path):
    final = written_folder(tmp_path, "cell", {"eval.csv": "old"})
    aside = written_folder(tmp_path, f"{store.TEMP_PREFIX}old-cell-{os.getpid()}",
                           {"eval.csv": "from a process long gone"})
    temp = written_folder(tmp_path, f"{store.TEMP_PREFIX}cell-1", {"eval.csv": "new"})
    store.publish(temp, final)
    assert [p.name for p in tmp_path.iterdir()] == ["cell"] and not aside.exists()
    assert (final / "eval.csv").read_text() == "new"


def test_publish_a_first_cell(tmp_path):
    temp = written_folder(tmp_path, f"{store.TEMP_PREFIX}cell-1", {"eval.csv": "new"})
    store.publish(temp, tmp_path / "cell")
    assert [p.name for p in tmp_path.iterdir()] == ["cell"]


# where cells can be written

def test_write_problem_accepts_writable_folders_and_leaves_nothing(tmp_path):
    assert store.write_problem([tmp_path, tmp_path / "not" / "yet", tmp_path]) is None
    assert list(tmp_path.iterdir()) == []


def test_write_problem_names_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    # folders already tried (tmp_path, twice) are skipped, not the end of the check
    assert store.write_problem([tmp_path / "ok", tmp_path / "b", tmp_path / "file" / "below"]) == \
        f"{tmp_path / 'file'} is a file, not a folder"


def test_write_problem_names_a_folder_that_takes_no_file(tmp_path):
    problem = store.write_problem([tmp_path, "/proc/no-such-cell-folder"])
    assert problem.startswith("cannot create files in /proc (") and problem.endswith(")")
    assert "Errno" not in problem  # the system's words for the error, not the exception


# the trace

def metrics_folder(tmp_path, rows):
    folder = tmp_path / "cell"
    folder.mkdir()
    frame = pd.DataFrame({"step": range(rows), "loss": [1 / (i + 3) for i in range(rows)],
                          "honest_ratio": [1234.56789] * rows, "other": [0.5] * rows})
    frame.to_csv(folder / "metrics.csv", index=False)
    return folder


def sealed_copy(cell_copy):
    """Writes cell_copy's run.json again from its record (new files, new seal)."""
    record = run_json(cell_copy)
    for key in ("files", "record_hash"):
        record.pop(key)
    store.write_run_json(cell_copy, record)
    return run_json(cell_copy)


@pytest.mark.parametrize("rows, kept", [
    (3, [0, 1, 2]), (200, list(range(200))), (201, [*range(0, 201, 2)]),
    (450, [*range(0, 450, 3), 449])])
def test_the_trace_keeps_every_kth_step_and_the_last(cell_copy, rows, kept):
    frame = pd.DataFrame({"step": range(rows), "loss": [0.25] * rows})
    frame.to_csv(cell_copy / "metrics.csv", index=False)
    sealed_copy(cell_copy)
    assert store.load_trace(cell_copy)["step"].tolist() == kept


def test_the_trace_keeps_its_columns_in_order_to_five_digits(cell_copy):
    frame = pd.DataFrame({"other": [0.5], "honest_ratio": [1234.56789], "loss": [1 / 3],
                          "step": [0], "bound_squared": [1.234567e-7]})
    frame.to_csv(cell_copy / "metrics.csv", index=False)
    record = sealed_copy(cell_copy)
    text = gzip.decompress((cell_copy / store.TRACE).read_bytes()).decode()
    assert text == "step,loss,honest_ratio,bound_squared\n0,0.33333,1234.6,1.2346e-07\n"
    assert record["files"][store.TRACE] == hashlib.sha256(text.encode()).hexdigest()


def test_the_trace_is_the_same_bytes_for_the_same_metrics(cell_copy):
    sealed_copy(cell_copy)
    first = (cell_copy / store.TRACE).read_bytes()
    (cell_copy / store.TRACE).unlink()
    sealed_copy(cell_copy)
    assert (cell_copy / store.TRACE).read_bytes() == first
    assert gzip.compress(gzip.decompress(first), compresslevel=9, mtime=0) == first


@pytest.mark.parametrize("text", ["", "step,loss\n"])
def test_no_trace_without_metrics_rows(cell_copy, text):
    (cell_copy / store.TRACE).unlink()
    (cell_copy / "metrics.csv").write_text(text)
    record = sealed_copy(cell_copy)
    assert not (cell_copy / store.TRACE).exists() and store.TRACE not in record["files"]
    (cell_copy / "metrics.csv").unlink()
    record = sealed_copy(cell_copy)
    assert not (cell_copy / store.TRACE).exists()
    assert set(record["files"]) == {"eval.csv"}


def test_run_json_is_written_as_sorted_indented_json(cell_copy):
    text = (cell_copy / "run.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_the_provenance_record_of_a_config():
    from benchmark import provenance
    config = make_config(**CELL)
    record = store.provenance_record(config)
    assert record == {
        "schema_version": 2, "config": config.to_dict(), "config_hash": config.hash(),
        "versions": behaviour.of_config(config), "code": provenance.code_hashes(config),
        "packages": provenance.package_versions(), "git": provenance.git_state(),
        "device": provenance.device_description(config.device)}


# the seal

def test_the_seal_holds_each_files_sha256_and_the_records_own(cell_copy):
    record = run_json(cell_copy)
    for name in ("eval.csv", "metrics.csv"):
        assert record["files"][name] == \
            hashlib.sha256((cell_copy / name).read_bytes()).hexdigest()
    body = {k: v for k, v in record.items() if k != "record_hash"}
    assert record["record_hash"] == hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_a_recompressed_trace_keeps_its_seal(cell_copy):
    record = run_json(cell_copy)
    text = gzip.decompress((cell_copy / store.TRACE).read_bytes())
    (cell_copy / store.TRACE).write_bytes(gzip.compress(text, compresslevel=1, mtime=5))
    assert store.seal_problem(cell_copy, record) is None


def test_an_edited_number_breaks_the_seal(cell_copy):
    record = run_json(cell_copy)
    record["summary"]["final_accuracy"] = 1.0
    assert store.seal_problem(cell_copy, record) == \
        "run.json was edited after its run (record hash mismatch)"


@pytest.mark.parametrize("name", ["eval.csv", "metrics.csv", store.TRACE])
def test_an_edited_file_breaks_the_seal(cell_copy, name):
    record = run_json(cell_copy)
    path = cell_copy / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"0,0\n"))
    else:
        path.write_text(path.read_text() + "0,0\n")
    assert store.seal_problem(cell_copy, record) == \
        f"{name} was edited after its run (content hash mismatch)"


def test_a_corrupt_trace_is_unreadable(cell_copy):
    record = run_json(cell_copy)
    (cell_copy / store.TRACE).write_bytes(b"not gzip")
    problem = store.seal_problem(cell_copy, record)
    assert problem.startswith(f"{store.TRACE} is unreadable (") and problem.endswith(")")


def test_every_listed_file_is_checked(cell_copy):
    """The seal stops at the first problem in name order: eval.csv, metrics.csv, trace."""
    record = run_json(cell_copy)
    (cell_copy / "metrics.csv").unlink()
    (cell_copy / store.TRACE).write_bytes(b"not gzip")
    assert store.seal_problem(cell_copy, record).startswith(f"{store.TRACE} is unreadable")


# the reasons a cell is not read

def test_a_finished_cell_reads_back(cell_copy):
    record, problem = store.check_run(cell_copy)
    assert problem is None and record == run_json(cell_copy)
    assert store.check_run(cell_copy, full=False) == (record, None)
    assert store.read_run(cell_copy) == record


def test_a_temporary_folder_is_not_read(cell_copy):
    temp = cell_copy.parent / f"{store.TEMP_PREFIX}{cell_copy.name}-1"
    cell_copy.rename(temp)
    assert store.check_run(temp) == (None, "a temporary folder (its run was interrupted)")
    assert store.read_run(temp) is None


def test_no_run_json(tmp_path):
    assert store.check_run(tmp_path) == (None, "no readable run.json (No such file or directory)")


def test_run_json_not_json(cell_copy):
    (cell_copy / "run.json").write_text("{")
    record, problem = store.check_run(cell_copy, full=False)
    assert record is None and problem.startswith("run.json is not valid JSON (")


@pytest.mark.parametrize("status", ["running", "killed"])
def test_an_unfinished_status(cell_copy, status):
    record = run_json(cell_copy)
    rewrite(cell_copy, {**record, "status": status})
    assert store.check_run(cell_copy, full=False) == \
        (None, f"status {status!r} is not a finished run")
    _, problem = store.check_run(cell_copy)
    assert problem.startswith("run.json fails its schema at status: ")


@pytest.mark.parametrize("status", ["ok", "failed", "diverged"])
def test_the_finished_statuses(cell_copy, status):
    record = {**run_json(cell_copy), "status": status}
    rewrite(cell_copy, record)
    assert store.check_run(cell_copy, full=False) == (record, None)
    assert store.check_run(cell_copy) == (record, None)


def test_a_schema_failure_says_where(cell_copy):
    record = run_json(cell_copy)
    del record["config"]["seed"]
    rewrite(cell_copy, record)
    assert store.check_run(cell_copy) == \
        (None, "run.json fails its schema at config: 'seed' is a required property")
    record["config"]["seed"], record["files"]["eval.csv"] = 1, "not a hash"
    rewrite(cell_copy, record)
    _, problem = store.check_run(cell_copy)
    assert problem.startswith("run.json fails its schema at files/eval.csv: ")
    rewrite(cell_copy, [record])
    _, problem = store.check_run(cell_copy)
    assert problem.startswith("run.json fails its schema at top level: ")


def shape(cell_copy, original=None, **changes):
    record = {**(original or run_json(cell_copy)), **changes}
    record = {k: v for k, v in record.items() if v is not ...}
    rewrite(cell_copy, record)
    return store.check_run(cell_copy, full=False)


def test_the_quick_shape_check_reasons(cell_copy):
    original = run_json(cell_copy)

    def problem(**changes):
        record, why = shape(cell_copy, original, **changes)
        assert record is None
        return why.removeprefix("run.json fails its schema: ")
    assert problem(config=...) == "run.json lacks 'config' (or it is not a dict)"
    assert problem(status=1) == "run.json lacks 'status' (or it is not a str)"
    assert problem(timings=[]) == "run.json lacks 'timings' (or it is not a dict)"
    assert problem(schema_version="2") == \
        "run.json lacks 'schema_version' (or it is not a int)"
    assert problem(schema_version=3) == "schema version 3 is not one this code reads"
    assert problem(schema_version=0) == "schema version 0 is not one this code reads"
    assert problem(versions=...) == "run.json lacks its behaviour versions"
    assert problem(versions=[]) == "run.json lacks its behaviour versions"
    config = {k: v for k, v in original["config"].items()
              if k not in ("seed", "profile")}
    assert problem(config=config) == "its config lacks seed, profile"
    rewrite(cell_copy, [])
    assert store.check_run(cell_copy, full=False) == \
        (None, "run.json fails its schema: run.json is not an object")


def test_the_quick_shape_check_reads_schema_version_1_without_versions(cell_copy):
    record, problem = shape(cell_copy, schema_version=1, versions=...)
    assert problem is None and record["schema_version"] == 1


# which cells are complete, and reading them

def test_is_complete_wants_the_same_config_and_behaviour(cell_copy, monkeypatch):
    config = make_config(**CELL)
    assert store.is_complete(cell_copy, config)
    assert not store.is_complete(cell_copy, make_config(**{**CELL, "seed": 2}))
    assert not store.is_complete(cell_copy.parent / "absent", config)
    current = behaviour.of_config(config)
    changed = {**current, "defense": {"median": current["defense"]["median"] + 1}}
    monkeypatch.setattr(behaviour, "of_config", lambda config: changed)
    assert not store.is_complete(cell_copy, config)


def test_cell_folders_skips_temporary_folders_at_any_depth(ran_cell, tmp_path):
    for name in ("b/cell", "a/cell", f"a/{store.TEMP_PREFIX}cell-1",
                 f"{store.TEMP_PREFIX}x-1/c/cell"):
        shutil.copytree(ran_cell, tmp_path / name)
    assert list(store.cell_folders(tmp_path)) == [tmp_path / "a/cell", tmp_path / "b/cell"]


def test_load_runs_one_row_per_readable_cell(ran_cell, tmp_path):
    shutil.copytree(ran_cell, tmp_path / "a" / "cell")  # unreadable, read first
    shutil.copytree(ran_cell, tmp_path / "b" / "cell")
    shutil.copytree(ran_cell, tmp_path / "c" / "cell")  # a failed run, with its reason
    (tmp_path / "a" / "cell" / "run.json").write_text("{")
    record = run_json(ran_cell)
    rewrite(tmp_path / "c" / "cell", {**record, "status": "failed", "reason": "diverged"})
    runs = store.load_runs(tmp_path)
    assert runs["path"].tolist() == [str(tmp_path / "b" / "cell"), str(tmp_path / "c" / "cell")]
    assert runs["status"].tolist() == ["ok", "failed"]
    assert runs["reason"].tolist()[1] == "diverged"
    row = runs.iloc[0]
    assert (row["config_hash"], row["defense"], row["seed"]) == \
        (record["config_hash"], "median", record["config"]["seed"])
    assert record["reason"] is None and pd.isna(row["reason"])
    assert row["seconds"] == record["timings"]["seconds"]
    assert row["lr_schedule"] == json.dumps(record["config"]["lr_schedule"])
    flat = {k for k, v in record["summary"].items() if not isinstance(v, (dict, list))}
    assert flat and {c for c in runs.columns if c.startswith("summary_")} == \
        {f"summary_{k}" for k in flat}
    for key in flat:
        assert row[f"summary_{key}"] == record["summary"][key] or \
            (pd.isna(row[f"summary_{key}"]) and record["summary"][key] is None)


def test_load_runs_of_an_empty_root(tmp_path):
    assert store.load_runs(tmp_path).empty


def test_the_loaders_read_the_cells_files(ran_cell):
    assert store.load_eval(ran_cell).columns.tolist()[:3] == ["step", "accuracy", "loss"]
    assert len(store.load_metrics(ran_cell)) == CELL["steps"]
    assert store.load_trace(ran_cell)["step"].tolist() == \
        store.load_metrics(ran_cell)["step"].tolist()
