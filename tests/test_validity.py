"""Results outlive refactors: on a copy of the tree, comments and a refactor in the engine
and the store keep `leaderboard --check` clean; bumping the harness version stales every
result."""
import os
import shutil
import subprocess
import sys

from tests.conftest import REPO
from tests.leaderboard_fixtures import TINY, tiny_profile_dir, tiny_results  # noqa: F401

PACKAGES = ("benchmark", "defenses", "attacks", "tasks", "leaderboard")


def leaderboard(copy, results, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(copy)}
    return subprocess.run([sys.executable, "-m", "benchmark", "leaderboard", "--results",
                           str(results), "--profile", "tiny", "--out", str(copy / "BOARD.md"),
                           "--no-site", *extra], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=300)


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_refactor_keeps_the_board_and_a_harness_version_bump_stales_it(tiny_results,
                                                                         tmp_path):
    copy = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(REPO / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__", "site"))
    (copy / "benchmark" / "profiles" / "tiny.toml").write_text(TINY)
    results = shutil.copytree(tiny_results, tmp_path / "results")
    assert leaderboard(copy, results).returncode == 0
    before = (copy / "BOARD.md").read_text()
    assert "| median" in before and "stale" not in before

    engine, store = copy / "benchmark" / "engine.py", copy / "benchmark" / "store.py"
    edit(engine, "class Simulation:", "# a comment added by a refactor\nclass Simulation:")
    edit(engine, "lr = self.config.lr_at(self.step_index)",
         "learning_rate = lr = self.config.lr_at(self.step_index)")
    edit(store, "def now() -> str:", "def now() -> str:  # UTC, to the second")
    check = leaderboard(copy, results, "--check")
    assert check.returncode == 0, check.stderr

    edit(copy / "benchmark" / "behaviour.py", "HARNESS = 1", "HARNESS = 2")
    check = leaderboard(copy, results, "--check")
    assert check.returncode == 1
    assert leaderboard(copy, results).returncode == 0
    after = (copy / "BOARD.md").read_text()
    assert "stale: behaviour changed since the run (harness 1 → 2)" in after
    assert "| median" not in after.split("## Excluded results")[0]
