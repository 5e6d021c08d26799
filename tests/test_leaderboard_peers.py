"""The speed table's peer column: shown only where a peer was timed, marked where the
peer's output differed."""
import json

from leaderboard import grids, kernels


def measurement(**extra):
    return {"defense": "median", "n": 51, "f": 24, "d": 79510, "device": "cpu",
            "median_ms": 2.0, "ratio_to_mean": 3.0, "ratio_to_gram": 0.5, **extra}


def load(tmp_path, *records):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "cpu.json").write_text(json.dumps({"results": list(records)}))
    rows, problems = kernels.load(tmp_path)
    assert not problems
    return grids.speed_grid(rows)


def test_without_peers_the_table_has_no_peer_column(tmp_path):
    grid = load(tmp_path, measurement())
    assert "× peer" not in grid.headers and len(grid.notes) == 1


def test_a_peer_ratio_is_shown_and_a_differing_peer_marked(tmp_path):
    grid = load(tmp_path,
                measurement(peer="byzfl 0.0.11", ratio_to_peer=0.25, peer_agrees=True),
                measurement(defense="krum", peer="byzfl 0.0.11", ratio_to_peer=2.0,
                            peer_agrees=False),
                measurement(defense="phocas"))
    assert grid.headers[-1] == "× peer" and "byzfl 0.0.11" in grid.notes[1]
    by_defense = {row[4].text: row[-1].text for row in grid.rows}
    assert by_defense == {"median": "0.25", "krum": "2 (differs)", "phocas": "—"}


def test_a_malformed_peer_ratio_is_refused_with_the_file_named(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "cpu.json").write_text(json.dumps(
        [measurement(ratio_to_peer="fast")]))
    rows, problems = kernels.load(tmp_path)
    assert rows == [] and problems[0][0] == "kernels/cpu.json"
