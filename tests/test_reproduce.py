"""`reproduce`: the ICLR'21 analysis (docs/reproduction.md) from stored `paper`-shaped results."""
import pytest

from benchmark import matrix, provenance
from benchmark.cli import main as cli_main
from benchmark.executors import run_serial
from leaderboard import collect, reproduction
from tests.leaderboard_fixtures import frozen_code_hashes

PAPERLIKE = """
description = "test: the paper's shape on digits"
tasks = ["digits"]
defenses = ["median"]
attacks = ["little"]
placements = ["update", "worker"]
seeds = [1, 2]
f = [2]

[settings]
steps = 6
eval_every = 3

[task.digits]
variants = [{lr = 0.1}]

[baseline]
defense = "average"
momentum_at = "update"
"""


@pytest.fixture(scope="module")
def paperlike(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles")
    (folder / "paperlike.toml").write_text(PAPERLIKE)
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matrix, "PROFILE_DIR", folder)
        patch.setattr(provenance, "code_hashes", frozen_code_hashes)
        profile = matrix.load_profile("paperlike")
        run_serial([c.config for c in matrix.expand(profile) if c.invalid is None], root,
                   lambda result: None)
        yield profile, root, folder


def test_scores_are_max_accuracy_means_with_the_baseline_of_their_setting(paperlike):
    profile, root, _ = paperlike
    results = collect.collect(root, profile).sound
    analysis = reproduction.analyse(results)
    (configuration,) = analysis.configurations
    assert configuration.key == ("digits", 2, "lr=0.1", False, "median", "little")
    for placement in ("update", "worker"):
        runs = [r for r in results if not r.is_baseline and r.label["momentum_at"] == placement]
        expected = sorted(max(a for _, a in r.evaluations()) for r in runs)
        assert sorted(configuration.accuracy[placement]) == expected
    baselines = [r for r in results if r.is_baseline]
    assert len(baselines) == 2 and len(configuration.baseline) == 2
    assert configuration.complete


def headline(baseline, update, worker, threshold=0.2):
    c = reproduction.Configuration(("t", 1, "", False, "r", "a"), {"update": [update],
                                   "worker": [worker]}, baseline=[baseline])
    return reproduction.Analysis([c], threshold, 3)


def test_headline_counts_configurations_an_attack_hurts_and_worker_momentum_recovers():
    assert headline(0.9, 0.6, 0.85).share == 1.0          # costs 0.3, recovers 0.25
    assert headline(0.9, 0.6, 0.75).share == 0.0          # recovers only 0.15
    assert headline(0.9, 0.75, 0.9).share is None         # the attack costs only 0.15
    assert headline(0.9, 0.7, 0.9).attacked               # exactly the threshold counts
    assert headline(0.9, 0.6, 0.75, threshold=0.1).share == 1.0
    missing = reproduction.Configuration(("t", 1, "", False, "r", "a"), {"update": [0.1]},
                                         baseline=[0.9])
    assert not missing.attacked(0.2)                      # no worker runs: not counted


def test_within_worker_runs_compares_momentum_with_raw_gradients_per_attack():
    def configuration(attack, momentum, raw):
        return reproduction.Configuration(("t", 1, "", False, "r", attack),
                                          ratio={"worker": [momentum]},
                                          raw_ratio={"worker": [raw]})
    analysis = reproduction.Analysis([configuration("empire", 1.0, 9.0),
                                      configuration("little", 3.0, 1.5),
                                      configuration("little", 0.5, 0.6),
                                      configuration("little", 2.0, 2.0)], 0.2, 4)
    assert reproduction._within_worker_runs(analysis) == \
        "2 of 4 configurations (empire 1 of 1, little 1 of 3)"  # equal is not lower
    assert reproduction._within_worker_runs(reproduction.Analysis([], 0.2, 0)) == \
        "no run with momentum at the workers yet"


def test_reproduce_writes_the_same_bytes_and_checks_them(paperlike, tmp_path, monkeypatch, capsys):
    profile, root, folder = paperlike
    monkeypatch.setattr(matrix, "PROFILE_DIR", folder)
    out = tmp_path / "docs" / "reproduction.md"
    args = ["reproduce", "--results", str(root), "--profile", "paperlike", "--out", str(out)]
    assert cli_main(args) == 0
    first = out.read_bytes()
    assert cli_main(args) == 0 and out.read_bytes() == first
    assert cli_main([*args, "--check"]) == 0
    text = first.decode()
    assert "| digits" in text and "median" in text and "in more than 60% of the cases" in text
    out.write_text(text + "edited\n")
    assert cli_main([*args, "--check"]) == 1
    assert cli_main([*args, "--threshold", "0"]) == 2
    assert "--threshold must be in (0, 1]" in capsys.readouterr().err


def test_reproduce_draws_one_figure_per_setting_the_page_names(paperlike, tmp_path,
                                                                monkeypatch, capsys):
    profile, root, folder = paperlike
    monkeypatch.setattr(matrix, "PROFILE_DIR", folder)
    out = tmp_path / "docs" / "reproduction.md"
    args = ["reproduce", "--results", str(root), "--profile", "paperlike", "--out", str(out)]
    assert cli_main(args) == 0
    figures = sorted((tmp_path / "docs" / "reproduction").glob("*.png"))
    assert figures
    text = out.read_text()
    assert "## Accuracy curves" in text
    for figure in figures:
        assert f"](reproduction/{figure.name})" in text
    first = [figure.read_bytes() for figure in figures]
    (tmp_path / "docs" / "reproduction" / "stale.png").write_bytes(b"old")
    assert cli_main(args) == 0
    assert sorted((tmp_path / "docs" / "reproduction").glob("*.png")) == figures  # stale gone
    assert [figure.read_bytes() for figure in figures] == first  # same results, same bytes
    figures[0].unlink()
    assert cli_main([*args, "--check"]) == 1
    assert f"{figures[0].name} is missing" in capsys.readouterr().out
