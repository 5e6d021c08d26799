"""Hostile input: bad --jobs and run settings are refused before anything is written;
leftovers of killed runs are cleaned up; a results folder that cannot be written is
refused up front."""
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from benchmark import executors, matrix, store
from benchmark.cells import run_cell
from benchmark.cli import main
from tests.conftest import REPO

DEAD_PID = 2 ** 22 + 7  # above Linux's pid_max: no process has it


def matrix_cell():
    """The quick profile's median/digits/none/worker/f=2/seed 1 cell, as `run` builds it."""
    (cell,) = matrix.expand(matrix.load_profile("quick"), "median", tasks=["digits"],
                            attacks=["none"], placements=["worker"], f_values=[2], seeds=[1],
                            overrides={"steps": 3})
    return cell.config


RUN_ONE = ["run", "--task", "digits", "--attack", "none", "--momentum", "worker", "--f", "2",
           "--seed", "1", "--steps", "3"]


# --- 3. --jobs ----------------------------------------------------------------------------

@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_is_refused(tmp_path, capsys, jobs):
    assert main([*RUN_ONE, "--defense", "median", "--jobs", jobs, "--dry-run",
                 "--results", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert f"--jobs {jobs}" in error and "at least 1" in error
    assert not (tmp_path / "results").exists()


def test_jobs_above_the_cpu_count_is_capped_and_said(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert main([*RUN_ONE, "--defense", "median", "--jobs", "100000",
                 "--results", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "--jobs 100000 capped at 1 (the CPU count)" in output
    assert "1 process(es)" in output and "1 ok" in output


# --- 4. settings validated before anything is written ------------------------------------

BAD_SETTINGS = {
    "no steps": (["--steps", "0"], "steps must be at least 1"),
    "negative budget": (["--time-budget", "-1"], "time_budget must be a positive"),
    "zero budget": (["--time-budget", "0"], "time_budget must be a positive"),
    "infinite budget": (["--time-budget", "inf"], "time_budget must be a positive"),
    "negative seed": (["--seed", "-1"], "seed must be a non-negative"),
    "nan lr": (["--lr", "nan"], "lr must be a positive finite number"),
    "infinite lr": (["--lr", "inf"], "lr must be a positive finite number"),
    "nan clip": (["--clip", "nan"], "clip must be a positive finite number"),
    "nan momentum": (["--momentum-factor", "nan"], "momentum must be in [0, 1)"),
    "nan l2": (["--l2", "nan"], "l2 must be a non-negative finite number"),
    "negative l2": (["--l2", "-0.1"], "l2 must be a non-negative finite number"),
    "float for an int": (["--set", "n=11.5"], "n must be a whole number, not 11.5"),
    "text for an int": (["--set", "n=eleven"], "n must be a whole number, not 'eleven'"),
    "bool for a number": (["--set", "lr=true"], "lr must be a number, not True"),
    "number for a bool": (["--set", "nesterov=1"], "nesterov must be true or false, not 1"),
    "nan in a schedule": (["--set", "lr_schedule=[[10, NaN]]"], "lr_schedule"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_setting_exits_2_with_the_fix_and_writes_nothing(tmp_path, capsys, case):
    args, message = BAD_SETTINGS[case]
    out = tmp_path / "results"
    assert main(["cell", *args, "--steps" if "--steps" not in args else "--eval-every",
                 "3", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert not out.exists()


def test_run_refuses_a_bad_setting_before_any_cell_starts(tmp_path, capsys):
    assert main([*RUN_ONE, "--defense", "median", "--lr", "nan", "--results",
                 str(tmp_path / "results")]) == 2
    assert "lr must be a positive finite number" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# --- 5. leftovers of killed runs --------------------------------------------------------------

def mark(root, token, pid, host=None):
    path = root / f"{executors.SHARED_MARK}{token}"
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid}))
    return path


def test_the_next_run_removes_leftovers_whose_process_is_gone(tmp_path, capsys):
    config = matrix_cell()
    complete = run_cell(config, tmp_path).folder
    leftovers = {
        "dead publish": complete.parent / f"{store.TEMP_PREFIX}old-{complete.name}-{DEAD_PID}",
        "dead temp": complete.parent / f"{store.TEMP_PREFIX}{complete.name}-{DEAD_PID}",
        "dead mark": mark(tmp_path, "dead", DEAD_PID),
    }
    kept = {
        "live publish": complete.parent / f"{store.TEMP_PREFIX}old-{complete.name}-{os.getppid()}",
        "live mark": mark(tmp_path, "live", os.getppid()),
        "mark of another host": mark(tmp_path, "elsewhere", DEAD_PID, host="other-node"),
    }
    for name, path in {**leftovers, **kept}.items():
        if "mark" not in name:
            shutil.copytree(complete, path)
    assert main([*RUN_ONE, "--defense", "median", "--jobs", "1", "--results",
                 str(tmp_path)]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert [name for name, path in leftovers.items() if path.exists()] == []
    assert [name for name, path in kept.items() if not path.exists()] == []


def test_a_cell_killed_between_the_renames_of_publish_is_run_again_cleanly(tmp_path):
    config = matrix_cell()
    final = run_cell(config, tmp_path).folder
    old = final.parent / f"{store.TEMP_PREFIX}old-{final.name}-{DEAD_PID}"
    new = final.parent / f"{store.TEMP_PREFIX}{final.name}-{DEAD_PID}"
    shutil.copytree(final, new)
    final.rename(old)  # killed here: the old folder set aside, the new one not yet in place
    assert main([*RUN_ONE, "--defense", "median", "--jobs", "1", "--results",
                 str(tmp_path)]) == 0
    assert store.is_complete(final, config)
    assert sorted(path.name for path in final.parent.iterdir()) == [final.name]


def test_a_dask_run_writes_its_owner_into_its_mark(tmp_path):
    path = executors.write_mark(tmp_path)
    owner = json.loads(path.read_text())
    assert owner == {"host": socket.gethostname(), "pid": os.getpid()}
    assert path.name.startswith(executors.SHARED_MARK)


def test_validate_reports_leftovers_clearly(tmp_path, capsys):
    final = run_cell(dataclasses.replace(matrix_cell(), profile="standard"), tmp_path).folder
    old = final.parent / f"{store.TEMP_PREFIX}old-{final.name}-{DEAD_PID}"
    final.rename(old)
    mark(tmp_path, "dead", DEAD_PID)
    (tmp_path / f"{executors.SHARED_MARK}oldformat").touch()
    assert main(["validate", "--results", str(tmp_path), "--profile", "standard"]) == 1
    output = capsys.readouterr().out
    assert f"{old.name}: a temporary folder left by an interrupted run (process " \
           f"{DEAD_PID} is gone): delete it" in output
    assert f"{executors.SHARED_MARK}dead: the mark file of a Dask run that is gone " \
           f"(process {DEAD_PID} on {socket.gethostname()}): delete it" in output
    assert f"{executors.SHARED_MARK}oldformat: the mark file of a Dask run" in output
    assert "not inside a cell folder" not in output
    assert old not in list(store.cell_folders(tmp_path))  # the leaderboard never reads it


# --- 6. a results folder that cannot be written ------------------------------------------

@pytest.mark.parametrize("command", [["cell", "--steps", "3", "--results"],
                                     [*RUN_ONE, "--defense", "median", "--results"]],
                         ids=["cell", "run"])
def test_a_results_folder_that_cannot_be_created_is_refused_before_any_cell(
        tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*command, str(blocker / "results")]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert str(blocker) in captured.err and command[-1] in captured.err
    assert "failed" not in captured.out


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits do not stop root")
def test_a_read_only_results_folder_is_refused_with_one_line(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    root.chmod(0o555)
    try:
        done = subprocess.run([sys.executable, "-m", "benchmark", "cell", "--steps", "3",
                               "--out", str(root)], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    finally:
        root.chmod(0o755)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and str(root) in done.stderr


def test_a_folder_where_files_cannot_be_created_is_refused(tmp_path, capsys, monkeypatch):
    """As a read-only file system answers (permission bits do not stop root)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.tempfile, "mkstemp", refuse)
    assert main(["cell", "--steps", "3", "--out", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert "Permission denied" in error and "--out" in error
