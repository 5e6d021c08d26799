"""Bad input stops with exit code 2, a message naming the fix, and nothing written."""
import json

import pytest

from benchmark.cli import main

CASES = {
    "unknown defense": (["cell", "--defense", "nope"], "known defenses: "),
    "unknown attack": (["cell", "--attack", "nope"], "known attacks: "),
    "unknown task": (["cell", "--task", "nope"], "known tasks: "),
    "check violation": (["cell", "--defense", "krum", "--n", "6", "--f", "2"], "n >= 2f+3"),
    "option without value": (["cell", "--defense", "krum:m"], "write key=value"),
    "unknown option": (["cell", "--defense", "krum:bogus=1"], "its options: "),
    "mistyped option": (["cell", "--attack", "little:factor=many"], "not a valid float"),
    "bad placement": (["cell", "--momentum", "sideways"], "choose from update, worker, server"),
    "too many byzantine": (["cell", "--n", "5", "--f", "5"], "lower f"),
    "bad setting": (["cell", "--set", "colour=blue"], "KEY one of"),
    "unknown profile": (["run", "--defense", "median", "--profile", "nope"], "known profiles: "),
    "rule before plus": (["cell", "--defense", "median+krum"], "not a pre-aggregator"),
    "float for an int setting": (["cell", "--set", "n=11.5"], "n must be a whole number"),
    "no steps": (["cell", "--steps", "0"], "steps must be at least 1"),
    "no processes": (["run", "--defense", "median", "--jobs", "0"], "--jobs 0: give at least 1"),
}


def _with_output(args, tmp_path):
    out = tmp_path / "results"
    return [*args, "--out" if args[0] == "cell" else "--results", str(out)], out


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_fix_and_writes_nothing(tmp_path, capsys, case):
    args, out = _with_output(CASES[case][0], tmp_path)
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert CASES[case][1] in stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["unknown defense", "bad placement"])
def test_bad_input_exits_2_from_the_command_line(cli, tmp_path, case):
    """The same through `python -m benchmark`: the process's exit status is 2."""
    args, out = _with_output(CASES[case][0], tmp_path)
    done = cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert CASES[case][1] in done.stderr
    assert not out.exists()


def test_every_command_has_help(cli):
    for command in ("cell", "run", "list"):
        done = cli(command, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout


def test_list_json_names_the_builtins(cli):
    done = cli("list", "defenses", "--json")
    names = {row["name"] for row in json.loads(done.stdout)}
    assert {"average", "median", "krum"} <= names and "template" not in names


def test_cell_reports_accuracy_and_where_it_stored(cli, tmp_path):
    done = cli("cell", "--task", "digits", "--defense", "krum", "--attack", "little",
               "--momentum", "worker", "--f", "2", "--seed", "1", "--steps", "20",
               "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "final test accuracy" in done.stdout and str(tmp_path) in done.stdout


def test_large_matrix_summary_names_the_worst_attack_per_placement(capsys):
    from benchmark.cells import CellResult
    from benchmark.cli.run import _print_overview
    from benchmark.config import make_config

    def result(attack, placement, accuracy, status="ok"):
        config = make_config(defense="median", attack=attack, momentum_at=placement)
        summary = {"final_accuracy": accuracy} if status == "ok" else {}
        return CellResult(config, None, status, None, summary)

    _print_overview([result("little", "worker", 0.9), result("empire", "worker", 0.7),
                     result("none", "worker", 0.1), result("little", "update", 0.8),
                     result("empire", "update", 0.5, status="failed")], invalid=[])
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("digits"))
    assert "0.000 (empire)" in line and "0.700 (empire)" in line  # failed counts 0; none ignored
