"""Executors: a lost worker's cell is retried, a cell stuck inside a step is killed at
its hard time limit (local processes and Dask), and a matrix killed mid-run resumes and
completes on Dask."""
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmark import checkpoint, executors, store
from benchmark.cells import run_cell
from benchmark.config import make_config
from benchmark.isolated_defense import IN_PROCESS_VARIABLE
from tests.conftest import REPO
from tests.plugin_fixtures import write_plugin

PLUGINS = '''
import os
import time
from pathlib import Path

from benchmark.api import Defense

MARK = Path({mark!r})


def crash_once(gradients, f):
    if not MARK.exists():       # the first worker to get here dies; the retry goes on
        MARK.write_text("crashed")
        os.kill(os.getpid(), 9)
    return gradients.mean(dim=0)


def stuck(gradients, f):
    time.sleep(3600)


crash = Defense(name="crashonce", aggregate=crash_once)
'''


def configs(plugin_dir, tmp_path):
    write_plugin(plugin_dir, "defenses", "crashonce", PLUGINS.format(mark=str(tmp_path / "mark"))
                 .replace("crash = Defense", "defense = Defense"))
    write_plugin(plugin_dir, "defenses", "stuck", PLUGINS.format(mark=str(tmp_path / "mark"))
                 .replace('crash = Defense(name="crashonce", aggregate=crash_once)',
                          'defense = Defense(name="stuck", aggregate=stuck)'))
    return [make_config(defense=name, attack="none", steps=4, eval_every=2, profile="tiny")
            for name in ("crashonce", "stuck", "median")]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_lost_worker_is_retried_and_a_stuck_cell_is_killed(executor, plugin_dir, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv(IN_PROCESS_VARIABLE, "1")  # the crashing defense takes its worker down
    cells = configs(plugin_dir, tmp_path)
    monkeypatch.setattr(executors, "hard_limit",
                        lambda config: 8.0 if config.defense == "stuck" else 600.0)
    root = tmp_path / "results"
    done = []
    started = time.monotonic()
    if executor == "local":
        executors.run_local(cells, root, 2, done.append)
    else:
        executors.run_dask(cells, root, done.append, workers=2)
    assert time.monotonic() - started < 240
    status = {result.config.defense: result for result in done}
    assert (tmp_path / "mark").exists(), "the crashing defense did run"
    assert status["crashonce"].status == "ok", status["crashonce"].reason
    assert status["median"].status == "ok", status["median"].reason
    assert status["stuck"].status == "failed"
    assert "killed past its time budget" in status["stuck"].reason
    stored = {store.read_run(folder)["config"]["defense"]: store.read_run(folder)
              for folder in store.cell_folders(root)}
    assert stored["stuck"]["status"] == "failed"         # stored: a rerun does not redo it
    assert stored["crashonce"]["status"] == "ok"


ARGS = ["run", "--defense", "median", "--attack", "little", "--attack", "none",
        "--momentum", "update", "--momentum", "worker", "--f", "2", "--steps", "60",
        "--eval-every", "20"]
CELLS = 4


def completed(root):
    return sum(store.read_run(folder) is not None for folder in store.cell_folders(root)) \
        if root.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("where", [["--dask-workers", "2"]], ids=["dask"])
def test_killed_matrix_resumes_and_completes(where, tmp_path):
    """Through a local Dask cluster; the same through local processes (`--jobs 2`) is
    tests/test_resume.py's test, and passes here too with `where = ["--jobs", "2"]`."""
    root = tmp_path / "results"
    command = [sys.executable, "-m", "benchmark", *ARGS, *where, "--results", str(root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while completed(root) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the command, its workers, the Dask cluster
    process.wait()
    before = completed(root)
    assert 1 <= before < CELLS, "the kill should land mid-matrix"
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert completed(root) == CELLS
    assert f"{before} skipped" in rerun.stdout
    assert f"{CELLS - before} ok" in rerun.stdout


def test_a_killed_cell_leaves_no_checkpoint_and_stale_temporary_folders_go(tmp_path):
    config = make_config(defense="median", attack="none", steps=4, profile="tiny")
    final = store.cell_dir(tmp_path, config)
    saved = checkpoint.folder_for(final)
    saved.mkdir(parents=True)
    (saved / "step-2.pt").write_bytes(b"state")
    dead = final.parent / f"{store.TEMP_PREFIX}{final.name}-{2 ** 22 + 7}"  # above pid_max
    alive = final.parent / f"{store.TEMP_PREFIX}{final.name}-{os.getppid()}"
    for folder in (dead, alive):
        folder.mkdir()
    result = executors._timed_out(config, tmp_path)
    assert result.status == "failed" and store.is_complete(final, config)
    assert not saved.exists(), "a complete cell keeps no checkpoint to resume"
    assert not dead.exists(), "its process is gone: nothing will finish it"
    assert alive.exists(), "a running process may still publish it"


def test_a_worker_runs_every_thread_pool_with_one_thread():
    """numpy's OpenBLAS reads its thread count when it loads, before a worker's initializer
    runs: the initializer must still bring it (and torch's OpenMP) down to one thread, or
    parallel runs oversubscribe the cores."""
    probe = ("import numpy, torch\n"
             "from threadpoolctl import threadpool_info\n"
             "from benchmark import executors\n"
             "executors._init_worker()\n"
             "print(sorted({pool['num_threads'] for pool in threadpool_info()}), "
             "torch.get_num_threads())\n")
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
    output = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=environment,
                            capture_output=True, text=True, check=True).stdout
    assert output.split() == ["[1]", "1"]


CRASH_AFTER_A_CHECKPOINT = '''
import os
from pathlib import Path

from benchmark.api import Defense

MARK = Path({mark!r})
calls = 0


def crash_at_step_3(gradients, f):
    global calls
    calls += 1
    if calls == 4 and not MARK.exists():  # after the checkpoint of step 2; once
        MARK.write_text("crashed")
        os.kill(os.getpid(), 9)
    return gradients.mean(dim=0)


defense = Defense(name="crashlater", aggregate=crash_at_step_3)
'''


@pytest.mark.slow
def test_a_dask_cell_whose_worker_dies_resumes_from_its_checkpoint(plugin_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv(IN_PROCESS_VARIABLE, "1")  # the crashing defense takes its worker down
    write_plugin(plugin_dir, "defenses", "crashlater",
                 CRASH_AFTER_A_CHECKPOINT.format(mark=str(tmp_path / "mark")))
    config = make_config(defense="crashlater", attack="none", steps=6, eval_every=2,
                         checkpoint_every=2, profile="tiny")
    done = []
    executors.run_dask([config], tmp_path / "results", done.append, workers=1)
    assert (tmp_path / "mark").exists(), "the worker did die"
    assert [result.status for result in done] == ["ok"], done[0].reason
    record = store.read_run(done[0].folder)
    assert record["resumed_from_step"] == 2 and record["steps_done"] == 6
    assert not list((tmp_path / "results").glob(f"{executors.SHARED_MARK}*")), \
        "the run's mark file is removed"
    uninterrupted = run_cell(config, tmp_path / "again")
    for name in ("eval.csv", "metrics.csv"):
        assert (done[0].folder / name).read_bytes() == (uninterrupted.folder / name).read_bytes()


def test_a_dask_worker_that_does_not_see_the_root_sends_the_files_back(tmp_path):
    config = make_config(defense="median", attack="none", steps=2, eval_every=2,
                         profile="tiny")
    root = tmp_path / "results"
    root.mkdir()
    result, files = executors._run_packed(config.to_dict(), str(root), "no-such-mark")
    assert result.status == "ok" and {"run.json", "eval.csv"} <= set(files)
    assert not list(root.iterdir()), "nothing written under a root it does not see"
    (root / "the-mark").touch()
    result, files = executors._run_packed(config.to_dict(), str(root), "the-mark")
    assert files is None and store.is_complete(result.folder, config)
