"""The checkers (`validate`, `leaderboard --check`) against submissions that try to get
past them: a plugin module that patches the checks at import, deleted and replaced result
files, a re-sealed summary that its eval.csv contradicts."""
import gzip
import json
import shutil
import subprocess
import sys
import types

import leaderboard
from benchmark import registry, store
from benchmark.cli import main as cli_main
from leaderboard import collect
from tests.leaderboard_fixtures import (cell_folder, results, rewrite_record,  # noqa: F401
                                        tiny, tiny_profile_dir, tiny_results)
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
    assert registry._discover.cache_info().currsize == 0  # no discovery in this process


def commit(root):
    def git(*args):
        subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "results")


def test_validate_reports_a_deleted_cell_and_the_group_it_leaves_incomplete(results, capsys):
    commit(results)
    folder = cell_folder(results, "median", "little", "worker", 1)
    shutil.rmtree(folder)
    relative = folder.relative_to(results).as_posix()
    for extra in (["--base", "HEAD"], []):
        assert validate(results, *extra) == 1
        out = capsys.readouterr().out
        assert (f"error: {relative}: deleted since HEAD: a result on the board is never "
                f"removed (its group leaves the ranking); restore it with `git checkout HEAD "
                f"-- {results}/{relative}`") in out
        assert ("error: median on digits (momentum_at worker, f 2): incomplete after 1 "
                "deletion(s): 1 of its 4 cells missing") in out


def test_validate_reports_a_deleted_file_and_a_cell_replaced_by_other_numbers(results, capsys):
    commit(results)
    (cell_folder(results, "average", "none", "update", 1) / store.TRACE).unlink()
    replaced = cell_folder(results, "median", "none", "worker", 2)
    trace = gzip.decompress((replaced / store.TRACE).read_bytes()).decode().split("\n")
    trace[1] = trace[1].replace(",", ",9", 1)  # the first step's loss
    (replaced / store.TRACE).write_bytes(gzip.compress("\n".join(trace).encode()))
    rewrite_record(replaced, lambda record: record["files"].update(
        {store.TRACE: store.content_hash(replaced / store.TRACE)}))
    assert validate(results, "--base", "HEAD") == 1
    out = capsys.readouterr().out
    assert "/update-f2-s1-" in out and "/trace.csv.gz: deleted since HEAD: restore it with" in out
    assert (f"{replaced.relative_to(results).as_posix()}: replaced by other numbers under the "
            "same behaviour versions") in out


def test_validate_lets_a_stale_cell_go(results, capsys):  # it no longer counted
    commit(results)
    folder = cell_folder(results, "median", "little", "worker", 1)
    rewrite_record(folder, lambda record: record["versions"]["defense"].update(median=0))
    commit(results)
    shutil.rmtree(folder)
    assert validate(results, "--base", "HEAD") == 0
    out = capsys.readouterr().out
    assert "deleted since HEAD; it did not count (stale: behaviour changed" in out
    assert "never removed" not in out


def test_a_resealed_summary_that_eval_csv_contradicts_is_rejected(results, capsys):
    folder = cell_folder(results, "median", "little", "update", 1)
    accuracy = json.loads((folder / "run.json").read_text())["summary"]["final_accuracy"]
    rewrite_record(folder, lambda record: record["summary"].update(
        final_accuracy=round(accuracy + 0.3, 4)))  # as krum's fang-krum cell, 0.2055 -> 0.9055
    assert validate(results) == 1
    assert (f"hand-edited: run.json's summary disagrees with its files: final_accuracy "
            f"{round(accuracy + 0.3, 4)!r} (files: {accuracy!r})") in capsys.readouterr().out


def test_a_resealed_condition_share_is_rejected_by_validate_and_the_board_check(
        results, tiny, tmp_path, monkeypatch, capsys):
    folder = cell_folder(results, "median", "little", "update", 1)
    share = json.loads((folder / "run.json").read_text())["summary"]["condition_share"]
    rewrite_record(folder, lambda record: record["summary"].update(
        condition_share=0.0 if share else 1.0))
    with monkeypatch.context() as patched:  # the board a tree without the check gives
        patched.setattr(collect, "summary_check", types.SimpleNamespace(
            summary_problem=lambda folder, record: None), raising=False)
        board = tmp_path / "LEADERBOARD.md"
        board.write_text(leaderboard.build(results, tiny).markdown)
    assert validate(results) == 1
    assert "hand-edited: run.json's summary disagrees with its files: condition_share" in \
        capsys.readouterr().out
    assert check_board(results, board) == 1


def test_a_plugin_that_ends_discovery_stops_the_checkers_with_a_clear_message(
        results, plugin_dir, capsys):
    write_plugin(plugin_dir, "defenses", "zz_exit", "import sys; sys.exit(0)")
    assert validate(results) == 2
    assert ("plugin discovery failed in its child process (exit code 0, no answer): a plugin "
            "module ends or breaks the process when imported; fix or remove it") in \
        capsys.readouterr().err
