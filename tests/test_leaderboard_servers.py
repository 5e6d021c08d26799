"""The board's servers section (leaderboard.servers): complete groups of the `servers`
profile only, one row per (defense, f_ps, server attack), a column per gather period."""
import shutil

import pytest

import leaderboard
from benchmark import matrix
from benchmark.cells import run_cell
from leaderboard import servers


@pytest.fixture(scope="module")
def one_group(tmp_path_factory):
    """The three seeds of median under a silent Byzantine server, T = 50 (real runs)."""
    root = tmp_path_factory.mktemp("results")
    cells = [cell for cell in matrix.expand(matrix.load_profile("servers"), "median")
             if cell.config.gather_every == 50 and cell.config.byzantine_servers == 1
             and cell.config.server_attack == "silence"]
    assert len(cells) == 3
    folders = [run_cell(cell.config, root).folder for cell in cells]
    return root, folders


def test_a_complete_group_is_one_row_with_its_accuracy_worst_server_and_drift(one_group):
    root, _ = one_group
    grid = servers.section(root)
    assert grid.headers[:6] == ["defense", "f_ps", "server attack", "T = 1", "T = 10",
                                "T = 50"]
    (row,) = grid.rows
    texts = [cell.text for cell in row]
    assert texts[:5] == ["median", "1", "silence", "—", "—"]
    mean, _, half = texts[5].partition(" ± ")
    assert 0.5 < float(mean) <= 1 and float(half) >= 0
    assert float(texts[6]) <= float(mean) + 1e-9  # the worst correct server
    assert float(texts[7]) > 0                    # equivocating workers pull servers apart
    assert "3 of 495 cells in complete groups" in grid.notes[0]


def test_the_section_is_in_the_markdown_after_the_tasks(one_group):
    root, _ = one_group
    markdown = leaderboard.build(root).markdown
    assert "## Byzantine servers (digits)" in markdown
    assert markdown.index("## Byzantine servers") < markdown.index("## Defenses")


def test_an_incomplete_group_is_not_shown(one_group, tmp_path):
    root, folders = one_group
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / folders[0].relative_to(root))
    assert servers.section(copy) is None
    assert "Byzantine servers" not in leaderboard.build(copy).markdown


def test_validate_checks_servers_results_against_their_own_profile(one_group, capsys):
    from benchmark.cli import main
    root, _ = one_group
    assert main(["validate", "--results", str(root)]) == 1
    out = capsys.readouterr().out
    assert "not a result of the board's profiles" not in out
    assert "median on digits: 96 of 99 cells of the servers matrix missing" in out
