"""Rules with a trusted server data set (FLTrust's threat model) are ranked apart: a
section of their own in each task, with the same scores and statistics, and the main
ranking as it would be without them. On the tiny fixtures, `median` stands in for such a
rule (the predicate is patched); the plugin metadata marks the real one."""
import leaderboard
from leaderboard import collect, metadata, scores
from tests.leaderboard_fixtures import results, tiny, tiny_profile_dir, tiny_results  # noqa: F401

APART = "median"


def apart(defense):
    return defense == APART


def test_the_plugin_metadata_marks_rules_that_use_server_data():
    assert metadata.uses_server_data("fltrust")
    assert metadata.uses_server_data("nnm+fltrust")
    assert not metadata.uses_server_data("median")
    assert not metadata.uses_server_data("not-a-registered-rule")


def test_they_are_ranked_apart_with_the_same_scores(results, tiny):
    collection = collect.collect(results, tiny)
    together = scores.build(collection.results, server_data=lambda defense: False)
    board = scores.build(collection.results, server_data=apart)
    alone = scores.build([r for r in collection.results
                          if r.is_baseline or r.record["config"]["defense"] != APART],
                         server_data=lambda defense: False)
    assert together.server_data is None
    # the main ranking is the board without them
    for table, expected in zip(board.tables, alone.tables, strict=True):
        assert [(row.defense, row.rank, row.worst) for row in table.rows] == \
            [(row.defense, row.rank, row.worst) for row in expected.rows]
        assert not table.server_data
    # their tables: the same setting, baseline and scores as when ranked with the others
    apart_tables = board.server_data.tables
    assert [t.setting for t in apart_tables] == [t.setting for t in together.tables]
    for table, mixed in zip(apart_tables, together.tables):
        (row,) = table.rows
        (same,) = [r for r in mixed.rows if r.defense == APART]
        assert (row.worst, row.clean, row.attacks, row.rank) == (same.worst, same.clean,
                                                                 same.attacks, 1)
        assert table.baseline == mixed.baseline and table.server_data
        assert table.title().endswith("· trusted server data")
    assert [s.server_data for s in board.server_data.summaries] == [True, True]
    assert len(board.every_table) == 4 and len(board.every_summary) == 4


def test_the_board_shows_them_in_a_section_of_each_task(results, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(metadata, "uses_server_data", apart)
    built = leaderboard.build(results, tiny, site=tmp_path / "site", draw=False)
    markdown = built.markdown
    digits = markdown[markdown.index("## digits"):]
    main, _, section = digits.partition(f"### {scores.SERVER_DATA}")
    assert section, "no section for the rules with server data"
    assert "[median]" not in main.split("## Defenses")[0]
    assert "[median]" in section and "[average]" not in section.split("## Defenses")[0]
    assert "#### digits · momentum at worker · f = 2 of n = 11 · trusted server data" in section
    assert scores.SERVER_DATA_NOTE in section
    page = built.page
    anchors = [grid.anchor for grid in page.settings + page.server_data_settings
               + page.summaries + page.server_data_summaries]
    assert len(anchors) == len(set(anchors)) == 8
    assert "median" in page.ranked_defenses
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'id="server-data"' in index and scores.SERVER_DATA.replace("'", "&#39;") in index
    median_page = next(p for p in built.defense_pages if p.name == "median")
    assert len(median_page.settings.rows) == 2 and len(median_page.summaries.rows) == 2
