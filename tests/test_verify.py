"""`verify` as a pull request's trusted re-run: every cell of a slice (`--sample all`,
`--task`, `--defense`), another machine's last bits (`--tolerance`), and a plugin that
tries to patch the comparison. The tiny matrix's results (see test_leaderboard.py)."""
import sys

import pytest

from benchmark import registry
from benchmark.cli import main as cli_main
from tests.leaderboard_fixtures import (cell_folder, results, tiny,  # noqa: F401
                                        tiny_profile_dir, tiny_results)
from tests.plugin_fixtures import write_plugin
from tests.test_validate import tamper_eval

COMPARISON_OFF = """
    import benchmark.cli.verify as verify
    verify.compare = lambda *args: []
    verify.accuracy_gap = lambda *args: 0.0
"""


def verify(root, *extra):
    return cli_main(["verify", "--results", str(root), "--profile", "tiny", *extra])


def test_sample_all_of_one_defense_reruns_exactly_its_cells(results, capsys):
    stored = sorted(folder.relative_to(results).as_posix()
                    for folder in (results / "tiny" / "digits" / "median").glob("*/*"))
    assert verify(results, "--sample", "all", "--defense", "median", "--task", "digits") == 0
    out = capsys.readouterr().out
    rerun = sorted(line.split()[1] for line in out.splitlines()
                   if line.startswith("identical "))
    assert rerun == stored and len(stored) > 2
    assert f"{len(stored)} of {len(stored)} re-run cell(s) identical" in out


def test_a_defense_or_task_with_no_stored_cell_is_a_usage_error(results, capsys):
    assert verify(results, "--sample", "all", "--defense", "nosuchrule") == 2
    assert "matching --defense nosuchrule" in capsys.readouterr().err
    assert verify(results, "--sample", "all", "--task", "mnist") == 2


def test_tolerance_accepts_a_small_accuracy_gap_and_no_larger_one(results, capsys):
    folder = cell_folder(results, "median", "little", "update", 2)
    tamper_eval(folder, reseal=True)  # final accuracy +0.05 (at most 1.0) in files and summary
    narrowed = ["--sample", "all", "--defense", "median", "--task", "digits"]
    assert verify(results, *narrowed, "--tolerance", "0.1") == 0
    out = capsys.readouterr().out
    assert "within tolerance tiny/digits/median/little/update-f2-s2-" in out
    assert "1 within tolerance 0.1 (largest accuracy gap" in out
    assert verify(results, *narrowed, "--tolerance", "0.001") == 1
    assert "MISMATCH tiny/digits/median/little/update-f2-s2-" in capsys.readouterr().out
    assert verify(results, *narrowed) == 1  # byte-identical by default


@pytest.mark.parametrize("value", ["-0.1", "2", "nan", "x"])
def test_a_tolerance_outside_0_1_is_refused(results, value, capsys):
    with pytest.raises(SystemExit) as stop:
        verify(results, "--sample", "1", "--tolerance", value)
    assert stop.value.code == 2
    assert "--tolerance is an accuracy difference in [0, 1]" in capsys.readouterr().err


def test_a_plugin_patching_the_comparison_does_not_reach_verify(results, plugin_dir, capsys):
    tamper_eval(cell_folder(results, "median", "little", "update", 2), reseal=True)
    write_plugin(plugin_dir, "defenses", "zz_helper", COMPARISON_OFF)
    assert verify(results, "--sample", "all", "--defense", "median") == 1
    assert "MISMATCH tiny/digits/median/little/update-f2-s2-" in capsys.readouterr().out
    assert not [name for name in sys.modules if "zz_helper" in name]
    assert registry._discover.cache_info().currsize == 0  # the re-runs discover in children


def test_a_keyed_rerun_of_an_order_invariant_rule_gives_the_stored_bytes(results, capsys):
    """Keyed streams change the shuffle, which the median does not see: same bytes (the
    engine-level test of keyed streams is in test_defense_isolation.py)."""
    narrowed = ["--sample", "all", "--defense", "median", "--task", "digits"]
    assert verify(results, *narrowed, "--keyed", "--tolerance", "0") == 0
    stored = len(list((results / "tiny" / "digits" / "median").glob("*/*")))
    assert f"{stored} of {stored} re-run cell(s) identical" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    ([], "give --tolerance T"),
    (["--tolerance", "0.1", "--in-process-defense"], "drop --in-process-defense")])
def test_keyed_needs_a_tolerance_and_the_defense_in_its_own_process(results, capsys, extra,
                                                                     message):
    assert verify(results, "--sample", "1", "--keyed", *extra) == 2
    assert message in capsys.readouterr().err


DEDUP = """
    from benchmark.api import Defense

    def aggregate(gradients, f):  # the mean of the rows that have no bit-identical twin
        twins = (gradients[:, None] == gradients[None]).all(dim=2).sum(dim=1) > 1
        return gradients[~twins].mean(dim=0) if (~twins).any() else gradients.mean(dim=0)

    defense = Defense(name="dedup", aggregate=aggregate)
"""


def test_a_jittered_rerun_rejects_a_defense_that_drops_the_attacks_identical_rows(
        tiny, plugin_dir, tmp_path, capsys):
    from benchmark.config import make_config
    from benchmark.executors import run_serial

    write_plugin(plugin_dir, "defenses", "dedup", DEDUP)
    root = tmp_path / "results"
    # empire sends f identical rows; at f = 5 of 11 the honest mean beats every rule here
    run_serial([make_config(defense=defense, attack="empire", f=5, steps=20, eval_every=20,
                            seed=seed, profile="tiny")
                for defense in ("dedup", "median") for seed in (1, 2)], root,
               lambda result: None)
    jittered = ("--sample", "all", "--keyed", "--jitter", "0.00001", "--tolerance", "0.04")
    assert verify(root, *jittered, "--defense", "median") == 0
    capsys.readouterr()
    assert verify(root, "--sample", "all", "--defense", "dedup") == 0  # its own cells
    assert verify(root, *jittered, "--defense", "dedup") == 1
    out = capsys.readouterr().out
    assert out.count("MISMATCH tiny/digits/dedup/empire/") == 2, out


@pytest.mark.parametrize("value", ["0", "-0.001", "0.5", "nan"])
def test_a_jitter_outside_its_range_is_refused(results, value, capsys):
    with pytest.raises(SystemExit):
        verify(results, "--sample", "1", "--jitter", value, "--tolerance", "0.1")
    assert "--jitter is a fraction of each Byzantine vector's RMS coordinate" in \
        capsys.readouterr().err


def test_jitter_needs_a_tolerance(results, capsys):
    assert verify(results, "--sample", "1", "--jitter", "0.001") == 2
    assert "give --tolerance T" in capsys.readouterr().err
