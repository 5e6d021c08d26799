"""The processes that run cells never import a defense module (issue 19): the defenses'
declarations come from a catalog process (benchmark.defense_catalog), so a module's
import-time code cannot switch the isolation off or reach the simulation."""
import json
import os
import subprocess
import sys

import pytest

from benchmark import defense_catalog, registry
from benchmark.api import UsageError
from benchmark.plugins import BoundDefense
from tests.plugin_fixtures import write_plugin

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="isolation is built for Linux")

SWITCHER = """
    import gc
    import os
    import sys
    from pathlib import Path

    import benchmark.isolated_defense
    from benchmark.api import Defense

    Path({imported_in!r}, str(os.getpid())).touch()  # which processes import it
    benchmark.isolated_defense.wanted = lambda device: False  # isolation off, if it could

    def aggregate(gradients, f):
        for thing in gc.get_objects():  # the honest rows, where the simulation is
            if type(thing).__name__ == "Shuffled":
                return thing.honest.mean(dim=0)
        return gradients.mean(dim=0)

    defense = Defense(name="switcher", aggregate=aggregate)
"""


def cell(tmp_path, defense: str, *options: str) -> tuple[subprocess.Popen, dict]:
    results = tmp_path / "-".join((defense, *options))
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "cell", "--defense", defense, "--attack",
         "gaussian", "--steps", "20", "--results", str(results), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    (summary,) = results.rglob("run.json")
    return process, json.loads(summary.read_text())["summary"]


def test_a_defense_module_never_runs_in_the_process_that_holds_the_simulation(
        plugin_dir, tmp_path):
    imported_in = tmp_path / "imported-in"
    imported_in.mkdir()
    write_plugin(plugin_dir, "defenses", "switcher", SWITCHER.format(imported_in=str(imported_in)))
    process, switcher = cell(tmp_path, "switcher")
    _, average = cell(tmp_path, "average")
    assert str(process.pid) not in os.listdir(imported_in)
    assert os.listdir(imported_in)  # the catalog and the host did import it
    assert switcher["final_accuracy"] == average["final_accuracy"]
    _, inside = cell(tmp_path, "switcher", "--in-process-defense")  # what it would do there
    assert inside["final_accuracy"] > average["final_accuracy"]


@pytest.fixture
def declared(monkeypatch):
    monkeypatch.setenv(defense_catalog.VARIABLE, "child")
    registry.forget()
    yield
    registry.forget()


def test_declarations_from_the_catalog_are_the_imported_ones(declared):
    names = registry.names("defense")
    with defense_catalog.imported_here():
        imported = {name: registry.lookup("defense", name).spec for name in names}
    assert sorted(imported) == sorted(names)
    for name in names:
        spec = registry.lookup("defense", name).spec
        assert spec.aggregate is not imported[name].aggregate
        for field in defense_catalog.FIELDS + ("needs",):
            assert getattr(spec, field) == getattr(imported[name], field), (name, field)
    for text, n, d in [("krum", 11, 50), ("bulyan", 11, 50), ("bucketing+cclip", 17, 50),
                       ("nnm+trmean", 11, 50), ("median", 5, 50)]:
        for f in range(0, 6):
            remote = BoundDefense(text, f, None)
            with defense_catalog.imported_here():
                local = BoundDefense(text, f, None)
            assert remote.reason(n) == local.reason(n), (text, f)
            if local.reason(n) is None:
                assert remote.shapes(n) == local.shapes(n)
                assert remote.upper_bound(n, d) == local.upper_bound(n, d)


def test_a_declared_rule_is_never_called_in_the_run(declared):
    import torch

    with pytest.raises(RuntimeError, match="declarations only"):
        registry.lookup("defense", "median").spec.aggregate(torch.zeros(3, 2), 1)


def test_a_bad_option_is_still_a_usage_error(declared):
    with pytest.raises(UsageError, match="has no option"):
        registry.resolve("defense", "krum:q=1")


def test_a_dask_worker_started_apart_from_the_command_imports_no_defense(plugin_dir, tmp_path,
                                                                       monkeypatch):
    """A worker of an existing cluster (`dask worker`, `--scheduler`) did not inherit the
    command's settings: they travel with each cell."""
    from distributed import Client, LocalCluster

    from benchmark.isolated_defense import IN_PROCESS_VARIABLE

    imported_in = tmp_path / "imported-in"
    imported_in.mkdir()
    write_plugin(plugin_dir, "defenses", "switcher", SWITCHER.format(imported_in=str(imported_in)))
    monkeypatch.delenv(defense_catalog.VARIABLE, raising=False)
    monkeypatch.delenv(IN_PROCESS_VARIABLE, raising=False)
    results = tmp_path / "results"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        (worker,) = client.run(os.getpid).values()
        ran = subprocess.run(
            [sys.executable, "-m", "benchmark", "run", "--scheduler", cluster.scheduler_address,
             "--defense", "switcher", "--attack", "gaussian", "--momentum", "update",
             "--f", "4", "--seed", "1", "--steps", "20", "--results", str(results)],
            capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert client.run(os.getpid) == {cluster.workers[0].worker_address: worker}
    assert "1 ok" in ran.stdout
    assert os.listdir(imported_in), "the catalog and the host did import it"
    assert str(worker) not in os.listdir(imported_in)
