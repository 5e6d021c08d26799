"""A broken defense fails its own cell with the reason; the matrix goes on."""
import json

import pytest

from benchmark import store
from benchmark.cells import run_cell
from benchmark.config import make_config
from benchmark.isolated_defense import IN_PROCESS_VARIABLE
from tests.plugin_fixtures import write_plugin

BROKEN = {
    "raises": ("raise RuntimeError('boom')", "defense raised RuntimeError: boom"),
    "nan": ("return gradients.mean(dim=0) * float('nan')", "non-finite"),
    "shape": ("return gradients.mean(dim=0)[:-1]", "expected a tensor of shape"),
    "mutates": ("gradients[0] = 0; return gradients.mean(dim=0)",  # in its own process: the
                "write to its read-only input gradients"),             # write is a segfault
    "dtype": ("return gradients.mean(dim=0).double()", "dtype"),
}


def write_broken(plugin_dir, kind):
    body, _ = BROKEN[kind]
    write_plugin(plugin_dir, "defenses", f"broken_{kind}", f"""
        from benchmark.api import Defense
        def aggregate(gradients, f):
            {body}
        defense = Defense(name="broken-{kind}", aggregate=aggregate)
    """)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_defense_gives_a_failed_cell_with_the_reason(plugin_dir, tmp_path, kind,
                                                           monkeypatch):
    monkeypatch.setenv(IN_PROCESS_VARIABLE, "0")  # the default, whatever the caller's setting
    write_broken(plugin_dir, kind)
    result = run_cell(make_config(defense=f"broken-{kind}", attack="little", steps=5),
                      tmp_path / "results")
    assert result.status == "failed"
    assert BROKEN[kind][1] in result.reason
    record = json.loads((result.folder / "run.json").read_text())
    assert record["status"] == "failed" and BROKEN[kind][1] in record["reason"]


def test_diverging_run_is_marked_diverged(tmp_path):
    result = run_cell(make_config(defense="average", attack="empire:factor=-1e30", clip=None,
                                  steps=20, momentum_at="update"), tmp_path)
    assert result.status == "diverged", result.reason
    assert store.read_run(result.folder)["summary"]["divergence_step"] is not None


def test_matrix_completes_around_broken_cells(plugin_dir, tmp_path, cli):
    write_broken(plugin_dir, "raises")
    done = cli("run", "--defense", "broken-raises", "--attack", "little", "--attack", "empire",
               "--momentum", "worker", "--f", "2", "--jobs", "2", "--steps", "3",
               "--results", str(tmp_path))
    assert done.returncode == 1, done.stderr  # some cells failed
    runs = store.load_runs(tmp_path)
    assert len(runs) == 2 and set(runs["status"]) == {"failed"}
    assert "boom" in done.stdout
