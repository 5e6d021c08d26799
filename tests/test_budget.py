"""`run --budget`: no cell starts once the matrix's wall-clock budget has run out, the
folder stays consistent, and rerunning the command completes the matrix with the same
bytes as a run done in one go."""
import time

import pytest

from benchmark import executors, store
from benchmark.cli import main
from benchmark.config import make_config

FILES = ("eval.csv", "metrics.csv", store.TRACE)


def configs():
    return [make_config(task="digits", defense="median", attack=attack, momentum_at="worker",
                        steps=6, eval_every=3, seed=seed, profile="adhoc")
            for attack in ("little", "signflip") for seed in (1, 2)]


def contents(root, config):
    folder = store.cell_dir(root, config)
    return {name: (folder / name).read_bytes() for name in FILES}


def test_a_budget_stops_the_matrix_and_a_rerun_completes_it_with_the_same_bytes(
        tmp_path, monkeypatch):
    reference = executors.run_serial(configs(), tmp_path / "once", lambda result: None)
    assert [result.status for result in reference] == ["ok"] * 4

    checks = iter([False, False, True, True])  # the budget runs out after two cells
    monkeypatch.setattr(executors, "_past", lambda deadline: next(checks))
    first = executors.run_serial(configs(), tmp_path / "split", lambda result: None,
                                 deadline=time.time() + 3600)
    assert [result.status for result in first] == ["ok", "ok", "postponed", "postponed"]
    postponed = [result.config for result in first if result.status == "postponed"]
    assert not any(store.cell_dir(tmp_path / "split", c).exists() for c in postponed)
    assert not list((tmp_path / "split").rglob(f"{store.TEMP_PREFIX}*"))

    monkeypatch.undo()
    second = executors.run_serial(configs(), tmp_path / "split", lambda result: None)
    assert [result.status for result in second] == ["skipped", "skipped", "ok", "ok"]
    for config in configs():
        assert contents(tmp_path / "split", config) == contents(tmp_path / "once", config)


def test_worker_processes_start_nothing_past_the_deadline(tmp_path):
    results = executors.run_local(configs(), tmp_path, 2, lambda result: None,
                                  deadline=time.time() - 1)
    assert sorted(result.status for result in results) == ["postponed"] * 4
    assert not any(store.cell_dir(tmp_path, config).exists() for config in configs())


@pytest.mark.parametrize("budget", ["0", "-5m", "soon"])
def test_a_bad_budget_is_refused_before_anything_runs(tmp_path, capsys, budget):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--defense", "median", f"--budget={budget}", "--results", str(tmp_path)])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "argument --budget" in error and ("duration" in error or "positive" in error)
    assert not any(tmp_path.iterdir())


def test_the_command_reports_what_the_budget_postponed(tmp_path, capsys):
    args = ["run", "--defense", "median", "--task", "digits", "--attack", "little",
            "--momentum", "worker", "--f", "2", "--steps", "4", "--jobs", "1",
            "--results", str(tmp_path)]
    assert main([*args, "--budget", "0.001s"]) == 0
    output = capsys.readouterr().out
    assert "postponed" in output and "rerun the same command to continue" in output
    assert main(args) == 0
    assert "1 ok" in capsys.readouterr().out
