"""`profile-cell`: a whole cell timed part by part, whose steps are the real cell's (the
floor's forward+backward passes leave the run's random streams alone)."""
import json

import pytest

from benchmark.cells import run_cell
from benchmark.cli import main
from benchmark.config import make_config

from tests.test_tasks import DEBIAN_FASHION


def test_the_command_prints_every_part_and_the_floor(capsys):
    assert main(["profile-cell", "--steps", "6", "--eval-every", "3", "--defense", "median",
                 "--attack", "little", "--floor-every", "2"]) == 0
    out = capsys.readouterr().out
    for part in ("start-up", "data", "build", "steps", "evaluations", "rows", "cell", "floor"):
        assert f"\n{part}" in out or out.startswith(part) or f"{part}:" in out
    assert "6 steps, 3 evaluations" in out


def test_json_parts_add_up_to_the_cell(capsys):
    assert main(["profile-cell", "--steps", "4", "--eval-every", "2", "--floor-every", "0",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    parts = result["parts_s"]
    assert result["cell_s"] == pytest.approx(sum(parts[p] for p in
                                                 ("build", "steps", "evaluations", "rows")))
    assert "floor_pass_ms" not in result and result["evaluations"] == 3


def test_a_negative_floor_period_is_refused(capsys):
    assert main(["profile-cell", "--floor-every", "-1"]) == 2
    assert "--floor-every" in capsys.readouterr().err


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Fashion-MNIST files not installed")
def test_the_profiled_run_is_the_cell_itself_random_flips_included(tmp_path):
    from benchmark.cli.profile_cell import profile_cell
    config = make_config(task="fashion-mnist", n=7, f=1, batch_size=8, steps=4, eval_every=4,
                         defense="median", attack="little")
    profiled = profile_cell(config, floor_every=1)["final_evaluation"]
    stored = run_cell(config, tmp_path).summary
    assert profiled["accuracy"] == stored["final_accuracy"]
    assert profiled["loss"] == stored["final_loss"]
