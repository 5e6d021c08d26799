"""What a hostile defense leaves behind does not reach another cell (issue 19, point 2): a
process it starts, a thread count it changes, a plugin it replaces through the registry,
a file it writes into its cell's folder."""
import os
import time

import pytest

from benchmark import executors, store
from benchmark.config import make_config
from tests.plugin_fixtures import write_plugin

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


def tiny(defense, seed=1, **settings):
    return make_config(defense=defense, attack="little", steps=3, eval_every=3,
                       profile="tiny", seed=seed, **settings)


def write_defense(plugin_dir, name, body, stateful=False):
    write_plugin(plugin_dir, "defenses", name, f"""
        import os
        import subprocess
        from pathlib import Path
        import torch
        from benchmark import registry
        from benchmark.api import Defense
        def aggregate(gradients, f{', state' if stateful else ''}):
            {body}
            return gradients.mean(dim=0)
        defense = Defense(name="{name}", aggregate=aggregate, stateful={stateful})
    """)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("command", ["sleep 300", "sleep 300 & echo $! > {pids}/orphan"])
def test_a_process_a_defense_starts_does_not_outlive_its_cell(plugin_dir, tmp_path, command):
    """Started directly, or by a shell that exits at once and leaves it an orphan."""
    pids = tmp_path / "pids"
    pids.mkdir()
    shell = command.format(pids=pids)
    write_defense(plugin_dir, "spawner", f"""
            if not list(Path({str(pids)!r}).glob("p*")):
                child = subprocess.Popen(["sh", "-c", {shell!r}])
                Path({str(pids)!r}, f"p{{child.pid}}").touch()""")
    for jobs in (1, 2):
        for path in pids.iterdir():
            path.unlink()
        executors.run_local([tiny("spawner", seed) for seed in (1, 2)], tmp_path / f"r{jobs}",
                            jobs, lambda result: None)
        started = [int(path.name[1:]) for path in pids.glob("p*")]
        started += [int(path.read_text()) for path in pids.glob("orphan")]
        assert started
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in started if alive(pid)]


def test_a_thread_count_a_defense_sets_does_not_reach_the_next_cell(plugin_dir, tmp_path):
    write_defense(plugin_dir, "threader", """
            if not state:
                state["seen"] = True
                if torch.get_num_threads() != 1:
                    raise RuntimeError(f"started with {torch.get_num_threads()} threads")
            torch.set_num_threads(3)""", stateful=True)
    results = executors.run_local([tiny("threader", seed) for seed in (1, 2, 3, 4)], tmp_path,
                                  1, lambda result: None, start_method="fork")
    assert [result.status for result in results] == ["ok"] * 4, [r.reason for r in results]


def test_a_defense_that_replaces_another_through_the_registry_does_not_reach_its_cells(
        plugin_dir, tmp_path):
    write_defense(plugin_dir, "saboteur", """
            median = registry.discover("defense")["median"].spec
            object.__setattr__(median, "aggregate", lambda rows, f, **options: rows[0] * 0)""")
    honest = executors.run_local([tiny("median", seed) for seed in (1, 2)], tmp_path / "clean",
                                 1, lambda result: None, start_method="fork")
    mixed = [tiny("saboteur", seed) for seed in (1, 2, 3)] + [tiny("median", seed)
                                                              for seed in (1, 2)]
    after = executors.run_local(mixed, tmp_path / "mixed", 1, lambda result: None,
                                start_method="fork")
    assert [r.summary for r in after[3:]] == [r.summary for r in honest]
    for clean, shared in zip(honest, after[3:]):
        assert (clean.folder / "eval.csv").read_bytes() == (shared.folder / "eval.csv").read_bytes()


def test_a_file_a_defense_writes_into_its_cell_folder_fails_the_cell(plugin_dir, tmp_path):
    write_defense(plugin_dir, "scribbler", f"""
            for folder in Path({str(tmp_path)!r}).rglob(".tmp-*"):
                (folder / "note.txt").write_text("was here")""")
    (result,) = executors.run_local([tiny("scribbler")], tmp_path, 1, lambda result: None,
                                    start_method="fork")
    assert result.status == "failed"
    assert "a plugin wrote into the cell's folder (note.txt)" in result.reason
    assert not (result.folder / "note.txt").exists()
    assert store.read_run(result.folder)["status"] == "failed"

