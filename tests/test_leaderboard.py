"""The leaderboard: ranks and ties, exclusions with their reasons, byte-identical output."""
import json
import shutil
from pathlib import Path

import pytest

import leaderboard
from benchmark import store
from benchmark.cli import main as cli_main
from leaderboard import collect, kernels, scores
from tests.leaderboard_fixtures import (cell_folder, reasons, results,  # noqa: F401
                                        rewrite_record, tiny, tiny_profile_dir, tiny_results)

# --- exclusions on real result files ---------------------------------------------------

def test_complete_results_all_enter(results, tiny):
    collection = collect.collect(results, tiny)
    assert collection.reasons == {}
    assert len(collection.results) == 18  # 2 defenses x 2 attacks x 2 placements x 2 seeds + 2
    board = scores.build(collection.results)
    assert [table.title() for table in board.tables] == [
        "digits · momentum at update · f = 2 of n = 11",
        "digits · momentum at worker · f = 2 of n = 11"]
    assert board.tables[0].baseline is not None and board.tables[0].baseline.k == 2


def test_stale_quick_malformed_duplicated_hand_edited_and_incomplete_are_excluded(results, tiny):
    stale = cell_folder(results, "median", "little", "worker", 1)
    rewrite_record(stale, lambda r: r["versions"]["defense"].update(median=7))
    quick = cell_folder(results, "median", "little", "worker", 2)
    rewrite_record(quick, lambda r: r["config"].update(profile="quick"))
    malformed = cell_folder(results, "median", "none", "worker", 1)
    (malformed / "run.json").write_text('{"status": "ok"}')
    edited = cell_folder(results, "median", "little", "update", 1)
    text = (edited / "eval.csv").read_text().splitlines()
    text[-1] = text[-1].replace(text[-1].split(",")[1], "0.999", 1)
    (edited / "eval.csv").write_text("\n".join(text) + "\n")
    summary_edit = cell_folder(results, "median", "little", "update", 2)
    rewrite_record(summary_edit, lambda r: r["summary"].update(final_accuracy=0.99),
                   reseal=False)
    original = cell_folder(results, "average", "little", "worker", 1)
    copy = original.parent / (original.name + "-copy")
    shutil.copytree(original, copy)
    missing = cell_folder(results, "average", "none", "update", 2)
    shutil.rmtree(missing)

    found = reasons(results, tiny)
    relative = lambda folder: folder.relative_to(results).as_posix()  # noqa: E731
    assert found.pop(relative(stale)) == ("stale: behaviour changed since the run "
                                          "(defense median 7 → 1)")
    assert found.pop(relative(quick)).startswith("profile quick: its results never enter")
    assert found.pop(relative(malformed)).startswith("malformed: run.json fails its schema")
    assert found.pop(relative(edited)) == ("hand-edited: eval.csv was edited after its run "
                                           "(content hash mismatch)")
    assert found.pop(relative(summary_edit)) == ("hand-edited: run.json was edited after its "
                                                 "run (record hash mismatch)")
    assert found.pop(relative(copy)).startswith("duplicate: a copy of a cell stored at")
    # a group (defense, placement, f) enters only whole: median lost 3 of its 4 worker cells
    # and 2 of its 4 update cells; average lost one update cell (none, seed 2); average's
    # worker group keeps its original cell beside the duplicate
    incomplete = {path: reason for path, reason in found.items()
                  if reason.startswith("incomplete")}
    lacks = "incomplete matrix: its group (defense, task, placement, f) lacks {} of its 4 cells"
    assert incomplete == {relative(cell_folder(results, *cell)): lacks.format(count)
                          for cell, count in [
        (("median", "none", "worker", 2), 3), (("median", "none", "update", 1), 2),
        (("median", "none", "update", 2), 2), (("average", "little", "update", 1), 1),
        (("average", "little", "update", 2), 1), (("average", "none", "update", 1), 1)]}
    assert set(incomplete) == set(found)
    collection = collect.collect(results, tiny)
    board = scores.build(collection.results)
    (worker,) = board.tables
    assert worker.placement == "worker" and [row.defense for row in worker.rows] == ["average"]
    assert collection.coverage == {
        ("digits", (("task", "digits"), ("momentum_at", "update"), ("f", 2))): [7, 10],
        ("digits", (("task", "digits"), ("momentum_at", "worker"), ("f", 2))): [5, 8]}
    markdown = leaderboard.build(results, tiny).markdown
    assert "stale: behaviour changed since the run (defense median 7 → 1)" in markdown
    assert "hand-edited: eval.csv was edited" in markdown


def test_a_refactor_keeps_every_result_and_a_harness_version_bump_stales_all(
        results, tiny, monkeypatch):
    from benchmark import behaviour, provenance

    real = provenance.code_hashes
    monkeypatch.setattr(provenance, "code_hashes",
                        lambda config: {**real(config), "harness": "f" * 64})
    assert reasons(results, tiny) == {}
    monkeypatch.setattr(behaviour, "HARNESS", behaviour.HARNESS + 1)
    found = reasons(results, tiny)
    assert len(found) == 18
    assert set(found.values()) == {"stale: behaviour changed since the run (harness 1 → 2)"}


def test_a_defense_version_bump_stales_that_defenses_cells_only(results, tiny, monkeypatch):
    import dataclasses

    from benchmark import registry

    original = registry.discover
    plugins = dict(original("defense"))
    median = plugins["median"]
    plugins["median"] = dataclasses.replace(
        median, spec=dataclasses.replace(median.spec, version=median.spec.version + 1))
    monkeypatch.setattr(registry, "discover", lambda kind: plugins if kind == "defense"
                        else original(kind))
    found = reasons(results, tiny)
    assert len(found) == 8 and all("/median/" in path for path in found)
    assert set(found.values()) == {"stale: behaviour changed since the run (defense median 1 → 2)"}


# --- output ----------------------------------------------------------------------------

def write_kernels(root):
    (root / "kernels").mkdir()
    (root / "kernels" / "cpu.json").write_text(json.dumps([
        {"defense": "median", "n": 11, "f": 2, "d": 4810, "device": "cpu", "median_ms": 0.21,
         "ratio_to_mean": 3.5, "ratio_to_gram": None},
        {"defense": "krum", "n": 11, "f": 2, "d": 4810, "device": "cpu", "median_ms": 0.4,
         "ratio_to_mean": 6.0, "ratio_to_gram": 1.1}]))
    (root / "kernels" / "cuda.json").write_text(json.dumps({"machine": {"device": "cuda"},
                                                           "results": [
        {"defense": "krum", "n": 11, "f": 2, "d": 4810, "device": "cuda", "median_ms": 0.05,
         "ratio_to_mean": 2.0, "ratio_to_gram": 0.9, "wall_ms": 0.06}]}))
    (root / "kernels" / "broken.json").write_text(json.dumps([{"defense": "krum"}]))


def test_two_regenerations_give_identical_bytes(results, tiny, tmp_path):
    write_kernels(results)
    first = leaderboard.build(results, tiny, site=tmp_path / "one")
    second = leaderboard.build(results, tiny, site=tmp_path / "two")
    assert first.markdown == second.markdown
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*")
                   if p.is_file())
    assert Path("index.html") in files and len(files) == 1 + 2 * 3  # 2 settings x 3 plots
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    speed, problems = kernels.load(results)
    assert [(m.device, m.defense) for m in speed] == [("cpu", "krum"), ("cpu", "median"),
                                                      ("cuda", "krum")]
    assert problems[0][0] == "kernels/broken.json"
    assert "| cpu      | 4810 | 11  | 2   | krum" in first.markdown
    assert "not the kernel format" in first.markdown


def test_leaderboard_command_writes_and_checks(results, tiny, tmp_path, capsys):
    out, site = tmp_path / "LEADERBOARD.md", tmp_path / "site"
    args = ["leaderboard", "--results", str(results), "--profile", "tiny", "--out", str(out),
            "--site", str(site), "--no-plots"]
    assert cli_main(args) == 0
    assert (site / "index.html").exists() and out.read_text().startswith("# Leaderboard")
    assert cli_main([*args, "--check"]) == 0
    out.write_text(out.read_text().replace("median", "medianX", 1))
    assert cli_main([*args, "--check"]) == 1
    assert "is not what" in capsys.readouterr().err
    assert cli_main(["leaderboard", "--results", str(tmp_path / "nowhere")]) == 2


def test_site_builds_when_a_run_failed_before_its_first_step(results, tiny, tmp_path):
    folder = cell_folder(results)  # such a run writes no trace: it has no step to trace
    (folder / store.TRACE).unlink()
    rewrite_record(folder, lambda record: record["files"].pop(store.TRACE))
    built = leaderboard.build(results, tiny, site=tmp_path / "site")
    assert (tmp_path / "site" / "index.html").exists()
    assert "hand-edited" not in built.markdown
