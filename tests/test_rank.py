"""`python -m benchmark rank`: a defense's laptop slice run into a scratch folder and ranked
against committed results as the leaderboard would rank it, the committed results only
read, bad input refused before anything is written, an incomplete slice said so.

The committed results are the tiny profile's (tests/leaderboard_fixtures.py: median and
average, 2 attacks, 2 placements, 2 seeds, 8 steps); the new defense is a plugin found
through BENCHMARK_PLUGINS."""
import hashlib
import re
import shutil
from pathlib import Path

import pytest

import leaderboard
from benchmark import executors, matrix
from benchmark.cli import main
from benchmark.cli.rank import MARK, _summary_table
from tests.leaderboard_fixtures import (results, tiny, tiny_profile_dir,  # noqa: F401
                                        tiny_results)
from tests.plugin_fixtures import write_plugin

MINE = """
    import torch
    from benchmark.api import AtLeast, Defense

    def aggregate(gradients, f):
        # each coordinate's mean of its n - 2f middle values (a trimmed mean)
        n = gradients.shape[0]
        return gradients.sort(dim=0).values[f:n - f].mean(dim=0)

    defense = Defense(name="mine", aggregate=aggregate, description="trimmed mean",
                      reference="-", needs=AtLeast(%s))
"""


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root, with each file's bytes hash and mtime."""
    return {path.relative_to(root).as_posix():
            (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            if path.is_file() else "folder" for path in sorted(root.rglob("*"))}


def rank(results_root, scratch, *extra):
    return main(["rank", "--defense", "mine", "--profile", "tiny", "--jobs", "1",
                 "--results", str(results_root), "--scratch", str(scratch), *extra])


@pytest.fixture
def mine(plugin_dir):
    write_plugin(plugin_dir, "defenses", "mine", MINE % "2, 1")


def test_a_new_defense_is_ranked_against_the_committed_results_as_if_committed(
        results, tiny, mine, tmp_path, capsys):
    before = snapshot(results)
    scratch = tmp_path / "scratch"
    assert rank(results, scratch) == 0
    output = capsys.readouterr().out
    assert snapshot(results) == before  # the committed results were only read
    assert len(list((scratch / "tiny" / "digits" / "mine").rglob("run.json"))) == 8

    # what the leaderboard shows once the scratch cells are committed beside the others
    committed = Path(shutil.copytree(results, tmp_path / "committed"))
    shutil.copytree(scratch / "tiny" / "digits" / "mine", committed / "tiny" / "digits" / "mine")
    board = leaderboard.build(committed, tiny).board
    assert [s.title() for s in board.summaries] == ["digits · momentum at update",
                                                    "digits · momentum at worker"]
    for summary in board.summaries:
        assert {row.defense for row in summary.rows} == {"average", "median", "mine"}
        assert _summary_table(summary, "mine") in output  # same rows, ranks and scores
    assert f"mine {MARK}" in output and "median (not committed)" not in output
    places = [f"{row.rank} of 3 at {dict(s.group)['momentum_at']}"
              for s in board.summaries for row in s.rows if row.defense == "mine"]
    assert f"mine {MARK} would rank {places[0]}, {places[1]} " in output
    assert "complete in 2 of the 2 digits settings." in output

    assert rank(results, scratch) == 0  # resumed: nothing runs again
    assert "8 skipped" in capsys.readouterr().out
    assert snapshot(results) == before


def test_a_defense_on_the_board_is_re_ranked_from_its_local_copy(results, tiny, tmp_path,
                                                                  capsys):
    before = snapshot(results)
    committed = leaderboard.build(results, tiny).board
    scratch = tmp_path / "scratch"
    assert main(["rank", "--defense", "median", "--profile", "tiny", "--jobs", "1",
                 "--results", str(results), "--scratch", str(scratch)]) == 0
    output = capsys.readouterr().out
    assert "median is on the board (8 committed cells): they are set aside" in output
    assert snapshot(results) == before
    # runs are deterministic: the local copy gives the committed board, median marked
    for summary in committed.summaries:
        assert _summary_table(summary, "median") in output


def test_an_incomplete_slice_is_reported_and_the_same_command_completes_it(
        results, tiny, mine, tmp_path, capsys, monkeypatch):
    scratch = tmp_path / "scratch"
    checks = iter([False] * 6 + [True] * 2)  # the budget runs out after six of the 8 cells
    with monkeypatch.context() as patch:
        patch.setattr(executors, "_past", lambda deadline: next(checks))
        assert rank(results, scratch, "--budget", "1h") == 1
    output = capsys.readouterr().out
    assert "2 postponed" in output
    # cells run attack by attack: update's four first, then worker's two clean ones
    assert "digits · momentum at update · f = 2 of n = 11: rank " in output
    assert "digits · momentum at worker · f = 2 of n = 11: not ranked, 2 of its 4 cells " \
           "usable" in output
    assert re.search(r"would rank \d of 3 at update, unranked at worker", output)
    assert "complete in 1 of the 2 digits settings" in output
    assert "INCOMPLETE: 1 setting(s) lack cells (2 missing or left out)" in output
    assert "rerun the same command" in output

    assert rank(results, scratch) == 0
    output = capsys.readouterr().out
    assert "2 ok, 6 skipped" in output and "INCOMPLETE" not in output


def test_settings_the_rules_requirement_rejects_are_reported_as_invalid(
        plugin_dir, tmp_path, monkeypatch, capsys):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "twof.toml").write_text(
        'description = "two f values"\ntasks = ["digits"]\ndefenses = ["median"]\n'
        'attacks = ["none", "little"]\nplacements = ["worker"]\nseeds = [1]\nf = [2, 4]\n'
        '[settings]\nsteps = 8\neval_every = 4\n')
    monkeypatch.setattr(matrix, "PROFILE_DIR", profiles)
    write_plugin(plugin_dir, "defenses", "mine", MINE % "3, 1")  # n = 11 >= 3f + 1: f <= 3
    committed = tmp_path / "committed"
    (committed / "twof" / "digits").mkdir(parents=True)
    assert main(["rank", "--defense", "mine", "--profile", "twof", "--jobs", "1",
                 "--results", str(committed), "--scratch", str(tmp_path / "scratch")]) == 0
    output = capsys.readouterr().out
    assert "f = 4 of n = 11: not run, its cells are invalid (defense 'mine' with n=11, f=4: " \
           "mine needs n >= 3f+1 = 13)" in output
    assert "complete in 1 of the 2 digits settings, invalid in 1" in output
    assert "INCOMPLETE" not in output


@pytest.mark.parametrize("arguments, message", [
    (["--defense", "nosuchrule"], "copy defenses/template.py"),
    (["--defense", "median", "--jobs", "0"], "--jobs 0: give at least 1"),
    (["--defense", "median", "--profile", "quick"], "never enter the leaderboard"),
    (["--defense", "median", "--scratch", "{results}/local"], "give --scratch a folder outside"),
    (["--defense", "median", "--results", "{tmp}/nowhere"], "no committed digits results"),
])
def test_bad_input_exits_2_naming_the_fix_and_writes_nothing(results, tiny, tmp_path, capsys,
                                                            arguments, message):
    before = snapshot(results)
    arguments = [a.format(results=results, tmp=tmp_path) for a in arguments]
    defaults = {"--results": str(results), "--scratch": str(tmp_path / "scratch"),
                "--profile": "tiny"}
    extra = [item for key, value in defaults.items() if key not in arguments
             for item in (key, value)]
    assert main(["rank", *arguments, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "scratch").exists()
    assert snapshot(results) == before


def test_every_cell_invalid_is_refused(results, tiny, plugin_dir, tmp_path, capsys):
    write_plugin(plugin_dir, "defenses", "mine", MINE % "6, 1")  # n = 11 < 6f + 1 = 13
    assert rank(results, tmp_path / "scratch") == 2
    assert "every digits cell of mine is invalid" in capsys.readouterr().err
    assert not (tmp_path / "scratch").exists()
