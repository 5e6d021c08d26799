"""The `paper` profile: the ICLR'21 matrix, cell for cell."""
import dataclasses
from collections import Counter

import pytest

from benchmark import matrix, registry
from benchmark.api import UsageError
from benchmark.cli import main

PAPER_RULES = ("krum", "median", "trmean", "phocas", "meamed", "bulyan")
MISSING = [rule for rule in PAPER_RULES if rule not in registry.names("defense")]


@pytest.fixture(scope="module")
def paper():
    return matrix.load_profile("paper")


def test_each_rule_slice_has_the_papers_size(paper):
    # 4 datasets x 2 learning-rate settings x 2 Nesterov x 2 attacks x 2 placements
    # x 2 f values x 5 seeds
    cells = matrix.expand(paper, "median")
    assert len(cells) == 640 and not any(cell.invalid for cell in cells)
    assert Counter(cell.config.task for cell in cells) == {
        "mnist": 160, "fashion-mnist": 160, "cifar10": 160, "cifar100": 160}


def test_smallest_f_only_rules_and_the_baseline(paper):
    profile = dataclasses.replace(paper, defenses=["krum", "median"], smallest_f_only=["median"])
    cells = matrix.expand(profile)
    baselines = [cell for cell in cells if cell.label["attack"] == "none (baseline)"]
    medians = [cell for cell in cells if cell.config.defense == "median"]
    # one baseline per dataset, lr setting, Nesterov setting, f and seed
    assert len(baselines) == 4 * 2 * 2 * 2 * 5 == 160
    assert {cell.config.f for cell in medians} == {12, 5}
    assert len(cells) == 640 + 320 + 160


def test_spot_checked_cells(paper):
    cells = matrix.expand(paper, "krum", tasks=["mnist", "cifar100"], seeds=[3])
    mnist = [c.config for c in cells if c.config.task == "mnist"]
    assert {c.lr for c in mnist} == {0.5, 0.02} and {c.nesterov for c in mnist} == {False, True}
    krum = mnist[0]
    assert krum.defense == "krum:m=n-f-2,neighbours=n-f-1,squared=false"  # the ICLR'21 variant
    assert (krum.n, krum.batch_size, krum.steps, krum.momentum, krum.clip, krum.l2,
            krum.eval_every, krum.lr_schedule) == (51, 83, 300, 0.9, 2.0, 1e-4, 5, ())
    assert {c.attack for c in mnist} == {"little", "empire"}  # defaults = paper's options
    assert {c.momentum_at for c in mnist} == {"update", "worker"}
    assert {c.f for c in mnist} == {24, 12}
    cifar = [c.config for c in cells if c.config.task == "cifar100"]
    assert {(c.lr, c.lr_schedule) for c in cifar} == {(0.01, ((1500, 0.001),)), (0.001, ())}
    assert {c.f for c in cifar} == {11, 5} and {c.n for c in cifar} == {25}
    assert {(c.batch_size, c.steps, c.momentum, c.clip, c.l2) for c in cifar} == {
        (50, 3000, 0.99, 5.0, 1e-2)}
    assert {c.gradients for c in cifar} == {"loop"}


def test_a_profile_without_defenses_needs_one_named():
    with pytest.raises(UsageError, match="lists no defenses: give --defense"):
        matrix.expand(matrix.load_profile("quick"))


@pytest.mark.skipif(bool(MISSING), reason=f"paper rules not registered yet: {MISSING}")
def test_the_dry_run_lists_the_3680_runs_of_the_paper(paper, capsys):
    assert main(["run", "--profile", "paper", "--dry-run"]) == 0
    assert "3680 cells to run, 0 invalid" in capsys.readouterr().out
    cells = matrix.expand(paper)
    assert len({cell.config.hash() for cell in cells}) == 3680
    baselines = [c.config for c in cells if c.label["attack"] == "none (baseline)"]
    assert {(c.task, c.n) for c in baselines} == {
        (task, n) for task in ("mnist", "fashion-mnist") for n in (27, 39)} | {
        (task, n) for task in ("cifar10", "cifar100") for n in (14, 20)}
    assert {(c.defense, c.attack, c.f, c.momentum_at) for c in baselines} == {
        ("average", "none", 0, "update")}
    bulyan = [c.config for c in cells if c.config.defense.startswith("bulyan")]
    assert len(bulyan) == 320 and {c.f for c in bulyan} == {12, 5}


def test_the_baseline_rules_slice_holds_the_baseline_cells_and_no_other_slice_does():
    """`run --defense average` completes what validate and the board expect of average."""
    board = matrix.load_profile("board")
    average = matrix.expand(board, "average", tasks=["fashion-mnist"])
    median = matrix.expand(board, "median", tasks=["fashion-mnist"])
    baseline = [c for c in average if c.label["attack"] == "none (baseline)"]
    assert len(baseline) == 2 * 3  # f 24 and 12, 3 seeds
    assert {(c.config.f, c.config.n) for c in baseline} == {(0, 27), (0, 39)}
    assert len(average) == len(median) + len(baseline)
    assert not [c for c in median if c.label["attack"] == "none (baseline)"]


def test_a_baseline_rule_the_profile_does_not_attack_has_only_its_baseline_cells(paper):
    """The paper's average is its unattacked reference only: `run --defense average` runs
    the cells a whole-profile run lists for it, no attacked ones outside the profile."""
    named = matrix.expand(paper, "average", tasks=["fashion-mnist"])
    whole = [cell for cell in matrix.expand(paper, tasks=["fashion-mnist"])
             if cell.config.defense == "average"]
    assert [cell.config for cell in named] == [cell.config for cell in whole]
    assert len(named) == 2 * 2 * 2 * 5  # lr settings, Nesterov, f, seeds
    assert {cell.label["attack"] for cell in named} == {"none (baseline)"}
    assert len(matrix.expand(paper, "average", tasks=["fashion-mnist"], attacks=["little"])) == 0
