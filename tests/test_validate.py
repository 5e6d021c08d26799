"""`validate` and `verify` on the tiny matrix's results (see test_leaderboard.py)."""
import json
import shutil
import subprocess

import pytest

from benchmark import store, summary_check
from benchmark.config import RunConfig
from benchmark.summary import summarize
from benchmark.cli import main as cli_main
from tests.leaderboard_fixtures import (cell_folder, results, rewrite_record, tiny,  # noqa: F401
                              tiny_profile_dir, tiny_results)


def validate(root, *extra):
    return cli_main(["validate", "--results", str(root), "--profile", "tiny", *extra])


def verify(root, sample):
    return cli_main(["verify", "--results", str(root), "--profile", "tiny",
                     "--sample", str(sample)])


def tamper_eval(folder, reseal=False):
    """Changes the final accuracy in eval.csv; with reseal, also fixes the summary and the
    hashes so that only a re-run can tell."""
    lines = (folder / "eval.csv").read_text().splitlines()
    step, accuracy, loss = lines[-1].split(",")
    lines[-1] = ",".join([step, str(min(1.0, float(accuracy) + 0.05)), loss])
    (folder / "eval.csv").write_text("\n".join(lines) + "\n")
    if reseal:
        def forge(record):
            record["files"]["eval.csv"] = store.content_hash(folder / "eval.csv")
            record["summary"] = summarize(
                summary_check.read_rows((folder / "metrics.csv").read_text()),
                summary_check.read_rows("\n".join(lines)), record["status"],
                record["steps_done"])
        rewrite_record(folder, forge)


def test_validate_accepts_complete_untouched_results(results, capsys):
    assert validate(results) == 0
    assert "18 result folder(s) to commit checked: 0 error(s)" in capsys.readouterr().out


def test_validate_catches_a_tampered_number(results, capsys):
    tamper_eval(cell_folder(results))
    assert validate(results) == 1
    assert "hand-edited: eval.csv was edited after its run" in capsys.readouterr().out


def test_validate_rejects_quick_results_missing_cells_and_unknown_defenses(results, capsys):
    source = cell_folder(results, "median", "none", "update", 1)
    shutil.copytree(source, results / "quick" / "digits" / "median" / "none" / source.name)
    shutil.rmtree(cell_folder(results, "average", "little", "worker", 2))
    renamed = cell_folder(results, "median", "little", "worker", 2)
    def rename(record):
        record["config"]["defense"] = "nosuchrule"
        record["config_hash"] = RunConfig.from_dict(record["config"]).hash()
    rewrite_record(renamed, rename)
    (results / "tiny" / "stray.txt").write_text("?")
    assert validate(results) == 1
    out = capsys.readouterr().out
    assert "quick/digits/median/none/" in out and "not a result of the board's profiles; only results/tiny/ is committed" in out
    assert "average on digits: 1 of 10 cells of the tiny matrix missing" in out
    assert "not registered in this tree: unknown defense 'nosuchrule'" in out
    assert "stray.txt: not inside a cell folder" in out


def test_validate_base_checks_only_what_changed(results, capsys):
    def git(*args):
        subprocess.run(["git", "-C", str(results), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "results")
    assert validate(results, "--base", "HEAD") == 0
    assert "0 result folder(s) changed since HEAD" in capsys.readouterr().out
    tamper_eval(cell_folder(results, "average", "none", "worker", 1))
    assert validate(results, "--base", "HEAD") == 1
    out = capsys.readouterr().out
    assert "1 result folder(s) changed since HEAD checked: 1 error(s)" in out


def test_verify_reruns_cells_and_catches_a_resealed_tampered_number(results, capsys):
    assert verify(results, 2) == 0
    assert "2 of 2 re-run cell(s) identical" in capsys.readouterr().out
    folder = cell_folder(results, "median", "little", "update", 2)
    tamper_eval(folder, reseal=True)
    assert validate(results) == 0          # seal and summary forged: only a re-run can tell
    (folder / "metrics.csv").unlink()      # as in a clone: checked against its hash instead
    assert verify(results, 18) == 1
    out = capsys.readouterr().out
    assert "MISMATCH tiny/digits/median/little/update-f2-s2-" in out
    assert "eval.csv differs from the stored file" in out
    assert "summary differs" not in out.split("MISMATCH")[0]
    assert "17 of 18 re-run cell(s) identical" in out
    record = json.loads((folder / "run.json").read_text())
    assert "metrics.csv" in record["files"]


@pytest.mark.slow  # reads the committed results/ (left out of the mutation-testing tree)
def test_paper_results_are_checked_against_the_paper_matrix_baselines_alone(tmp_path, capsys):
    """The paper profile's unattacked average is a baseline, not a listed rule: its slice is
    its baseline cells only (`python -m benchmark reproduce` reads them)."""
    import shutil
    from pathlib import Path

    from benchmark.cli import main
    committed = sorted((Path(__file__).parents[1] / "results" / "paper" / "mnist" / "average"
                        / "none").iterdir())
    root = tmp_path / "results"
    target = root / "paper" / "mnist" / "average" / "none" / committed[0].name
    shutil.copytree(committed[0], target)
    assert main(["validate", "--results", str(root)]) == 1
    out = capsys.readouterr().out
    assert "not a result of the board's profiles" not in out
    assert "incomplete matrix: its group (defense, task, placement, f) lacks 4 of its 5" in out
    shutil.rmtree(root / "paper")
    shutil.copytree(committed[0].parents[2], root / "paper" / "mnist")  # every baseline
    shutil.rmtree(root / "paper" / "mnist" / "median")
    assert main(["validate", "--results", str(root)]) == 0, capsys.readouterr().out
