"""The checkers (`validate`, `leaderboard --check`) against submissions that try to get
past them: a plugin module that patches the checks at import, deleted and replaced result
files, a re-sealed summary that its eval.csv contradicts."""
import sys

import leaderboard
from benchmark import store
from benchmark.cli import main as cli_main
from tests.leaderboard_fixtures import (cell_folder, results, tiny,  # noqa: F401
                                        tiny_profile_dir, tiny_results)
from tests.plugin_fixtures import write_plugin

SEAL_OFF = """
    import benchmark.store
    benchmark.store.seal_problem = lambda folder, record: None
"""


def validate(root, *extra):
    return cli_main(["validate", "--results", str(root), "--profile", "tiny", *extra])


def check_board(root, board):
    return cli_main(["leaderboard", "--results", str(root), "--profile", "tiny", "--check",
                     "--out", str(board)])


def raise_final_accuracy(folder):
    lines = (folder / "eval.csv").read_text().splitlines()
    step, accuracy, loss = lines[-1].split(",")
    lines[-1] = ",".join([step, str(min(1.0, float(accuracy) + 0.05)), loss])
    (folder / "eval.csv").write_text("\n".join(lines) + "\n")


def test_a_plugin_that_switches_the_seal_check_off_at_import_does_not_reach_the_checkers(
        results, tiny, plugin_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store, "seal_problem", store.seal_problem)  # undone if it leaks
    honest_seal = store.seal_problem
    raise_final_accuracy(cell_folder(results))
    with monkeypatch.context() as patched:  # the board the submitter's patched tree gives
        patched.setattr(store, "seal_problem", lambda folder, record: None)
        board = tmp_path / "LEADERBOARD.md"
        board.write_text(leaderboard.build(results, tiny).markdown)
    write_plugin(plugin_dir, "defenses", "zz_helper", SEAL_OFF)
    assert validate(results) == 1
    assert "hand-edited: eval.csv was edited after its run" in capsys.readouterr().out
    assert check_board(results, board) == 1
    assert store.seal_problem is honest_seal
    assert not [name for name in sys.modules if "zz_helper" in name]
