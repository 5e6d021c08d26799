"""Issue 22, measured with mutmut (docs/mutation-testing.md, "Measured: benchmark/store.py"):
what the trace keeps, what run.json and its seal cover, and the reasons a cell is not read
(the leaderboard and `validate` show them to the user). Each test pins a behaviour that
mutants of benchmark/store.py changed without any test noticing."""
import gzip
import hashlib
import json
import shutil

import pandas as pd
import pytest

from benchmark import behaviour, store
from benchmark.config import make_config
from tests.store_fixtures import (CELL, cell_copy, ran_cell, rewrite,  # noqa: F401
                                  run_json)


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
