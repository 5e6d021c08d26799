"""Hostile plugins: a plugin that exits, interrupts or never returns fails its own cell (the
matrix goes on, a real Ctrl-C still stops the command), on every path. Hostile input is in
test_hostile_input.py."""
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmark import executors, store
from benchmark.cells import run_cell
from benchmark.cli import main
from benchmark.config import make_config
from benchmark.isolated_defense import IN_PROCESS_VARIABLE
from tests.conftest import REPO
from tests.plugin_fixtures import write_plugin
from tests.test_hostile_input import RUN_ONE

ESCAPES = {  # defense name -> (statement in its aggregate, the reason names)
    "exits": ("sys.exit(0)", "defense raised SystemExit"),
    "interrupts": ("raise KeyboardInterrupt('by the plugin')", "defense raised KeyboardInterrupt"),
    "closes": ("raise GeneratorExit", "defense raised GeneratorExit"),
}


def write_defense(plugin_dir, name, body):
    write_plugin(plugin_dir, "defenses", name.replace("-", "_"), f"""
        import os
        import signal
        import sys
        import time
        from pathlib import Path
        from benchmark.api import Defense
        def aggregate(gradients, f):
            {body}
            return gradients.mean(dim=0)
        defense = Defense(name="{name}", aggregate=aggregate)
    """)


def write_escapes(plugin_dir):
    for name, (body, _) in ESCAPES.items():
        write_defense(plugin_dir, name, body)


def tiny(defense="median", attack="none", **settings):
    return make_config(defense=defense, attack=attack, steps=3, eval_every=3, profile="tiny",
                       **settings)


@pytest.fixture
def no_hang():
    """Fails a test that would otherwise hang (e.g. a stuck cell nobody kills) after 90 s."""
    def expire(signum, frame):
        raise TimeoutError("the test hung: nothing killed the stuck cell")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- 1. SystemExit, KeyboardInterrupt, GeneratorExit from plugin code ------------------

@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_a_defense_that_exits_or_interrupts_fails_only_its_own_cell(plugin_dir, tmp_path, name):
    write_escapes(plugin_dir)
    result = run_cell(tiny(name, "little"), tmp_path)
    assert result.status == "failed"
    assert ESCAPES[name][1] in result.reason
    assert store.read_run(result.folder)["status"] == "failed"  # stored: a rerun skips it


def test_an_attack_that_exits_and_a_probed_defense_that_exits_fail_their_cell(plugin_dir,
                                                                              tmp_path):
    write_escapes(plugin_dir)
    write_plugin(plugin_dir, "attacks", "exiting_attack", """
        import sys
        from benchmark.api import Attack
        def craft(honest, f, defense):
            sys.exit(3)
        attack = Attack(name="exiting-attack", attack=craft)
    """)
    write_plugin(plugin_dir, "attacks", "probing_attack", """
        from benchmark.api import Attack
        def craft(honest, f, defense):
            return defense(honest).expand(f, -1).clone()
        attack = Attack(name="probing-attack", attack=craft)
    """)
    exiting = run_cell(tiny("median", "exiting-attack"), tmp_path)
    assert exiting.status == "failed" and "attack raised SystemExit: 3" in exiting.reason
    probed = run_cell(tiny("exits", "probing-attack"), tmp_path)
    assert probed.status == "failed"
    assert "defense raised SystemExit while the attack probed it" in probed.reason


SIGINT_IGNORED = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    reason="SIGINT is ignored in this process (a background job of a script): no Ctrl-C "
           "can reach it")


@pytest.fixture
def in_process(monkeypatch):
    """The defense in the run's process (--in-process-defense), where a SIGINT that arrives
    while it runs may be the user's Ctrl-C; in a process of its own (the default) the
    defense is in a session of its own, which the terminal's Ctrl-C does not reach."""
    monkeypatch.setenv(IN_PROCESS_VARIABLE, "1")


@SIGINT_IGNORED
def test_a_ctrl_c_inside_a_plugin_still_stops_the_run(plugin_dir, tmp_path, in_process):
    """SIGINT (what Ctrl-C sends) arriving while the defense runs is the user's: it
    propagates, and nothing is stored."""
    write_defense(plugin_dir, "ctrl-c", "signal.raise_signal(signal.SIGINT)")
    with pytest.raises(KeyboardInterrupt):
        run_cell(tiny("ctrl-c"), tmp_path)
    assert not list(store.cell_folders(tmp_path))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_under_a_program_sigint_handler_a_plugin_interrupt_fails_its_cell_and_ctrl_c_reaches_it(
        plugin_dir, tmp_path, in_process):
    """A program (or a library it loaded) with its own SIGINT handler: the plugin's own
    KeyboardInterrupt still fails only its cell, and a real SIGINT is handed to that
    handler, which is in place again afterwards."""
    write_escapes(plugin_dir)
    write_defense(plugin_dir, "ctrl-c", "signal.raise_signal(signal.SIGINT)")
    received = []

    def program_handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt("the program's")

    previous = signal.signal(signal.SIGINT, program_handler)
    try:
        result = run_cell(tiny("interrupts", "little"), tmp_path / "a")
        assert result.status == "failed" and "defense raised KeyboardInterrupt" in result.reason
        with pytest.raises(KeyboardInterrupt, match="the program's"):
            run_cell(tiny("ctrl-c"), tmp_path / "b")
        assert received == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is program_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_with_sigint_ignored_a_plugin_interrupt_fails_its_cell(plugin_dir, tmp_path):
    """A process started in the background by a script ignores SIGINT: no Ctrl-C can reach
    it, so a KeyboardInterrupt is the plugin's own and fails its cell."""
    write_escapes(plugin_dir)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = run_cell(tiny("interrupts", "little"), tmp_path)
        assert result.status == "failed" and "defense raised KeyboardInterrupt" in result.reason
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_matrix_goes_on_past_a_defense_that_calls_sys_exit(plugin_dir, tmp_path, cli):
    write_escapes(plugin_dir)
    args = ["run", "--defense", "exits", "--attack", "little", "--attack", "empire",
            "--momentum", "worker", "--f", "2", "--steps", "3"]
    for jobs in ("1", "2"):
        root = tmp_path / jobs
        done = cli(*args, "--jobs", jobs, "--results", str(root))
        assert done.returncode == 1, done.stdout + done.stderr  # failed cells, not exit 0
        assert "2 failed" in done.stdout and "SystemExit" in done.stdout
        runs = store.load_runs(root)
        assert len(runs) == 2 and set(runs["status"]) == {"failed"}


def test_cell_reports_a_plugin_keyboard_interrupt_as_a_failed_cell(plugin_dir, tmp_path,
                                                                     capsys):
    write_escapes(plugin_dir)
    assert main(["cell", "--defense", "interrupts", "--steps", "3", "--out", str(tmp_path)]) == 1
    output = capsys.readouterr().out
    assert output.startswith("failed:") and "defense raised KeyboardInterrupt" in output


@SIGINT_IGNORED
def test_ctrl_c_of_the_user_stops_the_cell_command(plugin_dir, tmp_path):
    mark = tmp_path / "inside"
    write_defense(plugin_dir, "sleeper", f"Path({str(mark)!r}).touch(); time.sleep(600)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "cell", "--defense", "sleeper", "--steps", "3",
         "--out", str(tmp_path / "results")], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not mark.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), process.communicate()
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not list(store.cell_folders(tmp_path / "results"))


def test_a_defense_that_ends_its_process_fails_the_cell_command(plugin_dir, tmp_path, cli):
    write_defense(plugin_dir, "hard-exit", "os._exit(0)")
    done = cli("cell", "--defense", "hard-exit", "--steps", "3", "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr  # not 0 with nothing said
    assert done.stdout.startswith("failed:") and "the defense's process ended" in done.stdout


def test_a_sigint_a_defense_sends_itself_in_its_own_process_fails_only_its_cell(plugin_dir,
                                                                              tmp_path):
    write_defense(plugin_dir, "ctrl-c", "signal.raise_signal(signal.SIGINT)")
    result = run_cell(tiny("ctrl-c"), tmp_path)
    assert result.status == "failed" and "defense raised KeyboardInterrupt" in result.reason


def test_a_defense_host_gets_sigint_even_from_a_template_started_with_it_ignored(plugin_dir,
                                                                               tmp_path):
    """A run started in the background ignores SIGINT, and so did the template it started
    and every host forked from it: a defense's own SIGINT then did nothing."""
    from benchmark.host_template import TEMPLATE
    write_defense(plugin_dir, "ctrl-c", "signal.raise_signal(signal.SIGINT)")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        TEMPLATE.start()  # a fresh template, inheriting SIG_IGN
        result = run_cell(tiny("ctrl-c"), tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
        TEMPLATE.start()
    assert result.status == "failed" and "defense raised KeyboardInterrupt" in result.reason


# --- 2. a hard time limit on every path ---------------------------------------------------

@pytest.fixture
def stuck(plugin_dir, monkeypatch):
    write_defense(plugin_dir, "stuck", "time.sleep(3600)")
    monkeypatch.setattr(executors, "hard_limit",
                        lambda config: 3.0 if config.defense == "stuck" else 600.0)


def test_run_serial_kills_a_stuck_cell_and_goes_on(stuck, tmp_path, no_hang):
    done = []
    results = executors.run_serial([tiny("stuck"), tiny("median")], tmp_path, done.append)
    assert [result.status for result in results] == ["failed", "ok"]
    assert "killed past its time budget" in results[0].reason
    assert store.read_run(results[0].folder)["status"] == "failed"
    assert len(done) == 2


@pytest.mark.parametrize("command", [
    ["cell", "--defense", "stuck", "--steps", "3", "--out"],
    [*RUN_ONE, "--defense", "stuck", "--jobs", "1", "--results"]], ids=["cell", "run"])
def test_the_commands_kill_a_stuck_defense(stuck, tmp_path, capsys, no_hang, command):
    assert main([*command, str(tmp_path)]) == 1
    output = capsys.readouterr().out
    assert "failed" in output and "killed past its time budget" in output
    assert [store.read_run(folder)["status"] for folder in store.cell_folders(tmp_path)] \
        == ["failed"]


def test_the_guarded_path_computes_the_same_bytes_as_a_run_in_this_process(tmp_path):
    config = tiny("median", "little")
    inside = run_cell(config, tmp_path / "inside")
    (guarded,) = executors.run_serial([config], tmp_path / "guarded", lambda result: None)
    assert guarded.status == inside.status == "ok"
    for name in ("metrics.csv", "eval.csv", store.TRACE):
        assert (guarded.folder / name).read_bytes() == (inside.folder / name).read_bytes()
