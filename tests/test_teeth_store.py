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
from tests.store_fixtures import CELL, written_folder
from tests.leaderboard_fixtures import (cell_folder, reasons, results,  # noqa: F401
                                        tiny, tiny_profile_dir, tiny_results)



class Interrupted(Exception):
    """Stands for the process being killed at that point."""


# --- 2. publication through a temporary name and a rename -----------------------------
# Mutations killed: `publish` copying the files into the final folder one by one (in place)
# instead of renaming the temporary folder; a cell written directly into its final folder.

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
