"""Issue 22, measured with mutmut (docs/mutation-testing.md, "Measured: benchmark/store.py"):
where a cell is written, what its temporary folders are called and when they are cleaned
up, how a folder is published. Each test pins a behaviour that mutants of
benchmark/store.py changed without any test noticing."""
import dataclasses
import os
import subprocess

import pytest

from benchmark import store
from benchmark.config import make_config
from tests.store_fixtures import (CELL, alive_child, alive_pid, dead_pid,  # noqa: F401
                                  written_folder)


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
