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
from tests.plugin_fixtures import write_plugin

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


def test_a_defense_version_bump_stales_that_defenses_cells_only(results, tiny, plugin_dir):
    # a plugin folder's module declaring the same name stands in for the tree's median, in
    # the child process that tells the checkers the plugins' versions
    write_plugin(plugin_dir, "defenses", "median_v2", """
        import dataclasses
        from defenses.median import defense as median
        defense = dataclasses.replace(median, version=median.version + 1)
    """)
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
    assert Path("index.html") in files
    assert len(files) == 1 + 2 * 3 + 2  # 2 settings x 3 plots, a page per defense
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


# --- links, coverage and provenance -------------------------------------------------------

def test_markdown_links_defenses_to_their_source_and_papers(results, tiny):
    from urllib.parse import parse_qs, urlparse

    from leaderboard import metadata, render

    built = leaderboard.build(results, tiny)
    rows = [line for line in built.markdown.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| 1      | [median](defenses/median.py) ") for line in rows)
    ranked = [line for line in rows if " ± " in line]    # summary and setting rows
    assert len(ranked) == 8 and all("](defenses/" in line for line in ranked)
    median = metadata.component("median")
    assert median.source == "defenses/median.py" and median.reference
    address = built.markdown.split(f"[{median.reference}](", 1)[1].split(")", 1)[0]
    assert address.startswith("https://scholar.google.com/scholar?q=")
    assert parse_qs(urlparse(address).query) == {"q": [median.reference]}
    assert "## Defenses" in built.markdown

    def cell(name):
        return render.markdown_cell(render.Cell(name, name, ("defense", name)))
    assert cell("nnm+trmean") == "[nnm](defenses/nnm.py)+[trmean](defenses/trmean.py)"
    assert cell("krum:squared=false,m=n-f-2") == "[krum:squared=false,m=n-f-2](defenses/krum.py)"
    assert cell("bucketing:s=2+krum") == ("[bucketing:s=2](defenses/bucketing.py)"
                                          "+[krum](defenses/krum.py)")
    assert cell("not-a-rule") == "not-a-rule"
    assert metadata.source_path(Path("/elsewhere/defenses/krum.py")) is None


def test_page_files_are_safe_and_distinct():
    from leaderboard import metadata

    names = ["krum", "nnm+trmean", "krum:squared=false,m=n-f-2", "krum_3asquared",
             "multi-krum", "a/b", "é"]
    files = [metadata.page_file(name) for name in names]
    assert len(set(files)) == len(files)
    assert files[:2] == ["krum.html", "nnm+trmean.html"]
    assert all(set(file) <= metadata.FILE_NAME_SAFE | {"_"} for file in files)


def test_site_links_reach_the_repository_from_where_the_site_lies():
    from leaderboard import metadata, render

    root = metadata.REPOSITORY
    assert leaderboard._repository_from(root / "leaderboard" / "site") == "../../"
    assert leaderboard._repository_from(root / "docs" / "board" / "site") == "../../../"
    assert leaderboard._repository_from(root) == ""
    assert leaderboard._repository_from(Path("/tmp/elsewhere")) == render.SITE_TO_REPOSITORY


def coverage_rows(markdown):
    section = markdown.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| digits")]


def test_markdown_shows_coverage_near_the_top_and_provenance(results, tiny):
    shutil.rmtree(cell_folder(results, "median", "little", "update", 1))
    built = leaderboard.build(results, tiny)
    markdown = built.markdown
    assert markdown.index("## Coverage") < markdown.index("## Summary")
    assert coverage_rows(markdown) == [["digits", "update", "2", "9 / 10", "90%"],
                                       ["digits", "worker", "2", "8 / 8", "100%"]]
    assert "17 of the board's 18 cells present (94%)." in markdown
    assert "Profile `tiny`: 17 of the tiny profile's 18 digits cells present (94%)." in markdown
    records = [result.record for result in built.collection.results]
    newest = max(record["finished"] for record in records)
    commits = {record["git"]["commit"][:12] for record in records}
    runs = next(line for line in markdown.splitlines() if line.startswith("Runs: "))
    assert runs.startswith("Runs: seeds: 1, 2; git commit")
    assert f"newest run finished: {newest}." in runs
    assert all(commit in runs for commit in commits)


def test_heatmap_colours_fit_the_values_shown():
    import numpy as np

    from leaderboard import plots

    low, high = plots.colour_range(np.array([[0.90, 0.93], [0.95, 0.97]]))
    assert 0.90 <= low < 0.91 and high == 0.97
    values = np.append(np.linspace(0.9, 0.97, 40), [0.1, np.nan])  # one collapsed run
    low, high = plots.colour_range(values)
    assert 0.89 < low < 0.91 and high == pytest.approx(0.97)
    assert plots.colour_range(np.array([0.5, 0.5])) == (0.48, 0.5)
    assert plots.colour_range(np.array([0.0, 0.0])) == (0.0, plots.MIN_SPAN)
    assert plots.colour_range(np.array([np.nan])) == (0.0, 1.0)


def test_site_has_a_page_per_defense_linked_from_the_board(results, tiny, tmp_path):
    site = tmp_path / "site"
    built = leaderboard.build(results, tiny, site=site, draw=False)
    assert sorted(p.name for p in (site / "defenses").iterdir()) == ["average.html",
                                                                      "median.html"]
    index = (site / "index.html").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in index
    assert '<a href="defenses/median.html"' in index
    assert 'href="../../defenses/median.py"' in index   # the Defenses table's source column
    page = (site / "defenses" / "median.html").read_text()
    assert 'href="../index.html"' in page and 'href="../../../defenses/median.py"' in page
    (median,) = [p for p in built.defense_pages if p.name == "median"]
    assert len(median.settings.rows) == 2 and len(median.summaries.rows) == 2
    (site / "defenses" / "stale.html").write_text("from an older board")
    leaderboard.build(results, tiny, site=site, draw=False)
    assert not (site / "defenses" / "stale.html").exists()


def test_each_task_comes_from_the_first_profile_that_lists_it(results, tiny):
    """The board's profiles (`board` then `standard`): a task listed by an earlier profile is
    shown from that profile's results only, in the earlier profile's section; a later
    profile's results for it are excluded with the reason, never mixed into its tables."""
    import dataclasses

    early = dataclasses.replace(tiny, name="early", tasks=["digits"])
    later = dataclasses.replace(tiny, tasks=["mnist", "digits"])
    built = leaderboard.build(results, [early, later])
    assert built.collection.results == []
    assert set(built.collection.reasons.values()) == {
        "task digits: the board shows it from another profile's results (see BOARDS in "
        "leaderboard/__init__.py)"}
    markdown = built.markdown
    assert markdown.index("## digits\n\nProfile `early`: 0 of the early profile's 18 digits") \
        < markdown.index("## mnist\n\nProfile `tiny`: 0 of the tiny profile's")
    assert [name for name, _ in built.page.profiles] == ["early", "tiny"]
