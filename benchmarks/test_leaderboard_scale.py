"""The leaderboard at scale: Markdown and HTML tables rebuilt from a synthetic store of about
100,000 cells (BENCH_QUICK=1: about 2,000), once cold and once warm (with the index that a
first build leaves in the results folder). Target: under 60 s on one core.

    python -m pytest benchmarks/test_leaderboard_scale.py --benchmark-only -s

The store is one real digits cell's files copied into every cell of a synthetic profile
(every defense and composition of `standard`, every attack and placement, both f, as many
seeds as it takes), each run.json carrying its own config, versions and seal.
"""
import json
import os
import time
import tomllib

import pytest

import leaderboard
from benchmark import behaviour, matrix, store
from benchmark.cells import run_cell
from benchmark.config import make_config

CELLS = int(os.environ.get("BENCH_CELLS", 2_000 if os.environ.get("BENCH_QUICK") else 100_000))


def _profile(tmp_path, cells: int) -> matrix.Profile:
    standard = matrix.load_profile("standard")
    per_seed = sum(cell.invalid is None for cell in matrix.expand(standard, None, tasks=["digits"],
                                                                  seeds=[1]))
    seeds = max(1, round(cells / per_seed))
    text = (f'description = "synthetic"\ntasks = ["digits"]\ndefenses = ["*"]\n'
            f'compositions = {json.dumps(standard.compositions)}\nattacks = ["*"]\n'
            f'placements = ["update", "worker", "server"]\nseeds = {list(range(1, seeds + 1))}\n'
            f'[baseline]\ndefense = "average"\nmomentum_at = "update"\n')
    return matrix.Profile(name="scale", **tomllib.loads(text))


def _synthetic_store(root, profile: matrix.Profile) -> int:
    template = run_cell(make_config(task="digits", steps=2, eval_every=1), root / "template")
    base = json.loads((template.folder / "run.json").read_text())
    files = {name: (template.folder / name).read_bytes()
             for name in ("eval.csv", store.TRACE)}
    versions: dict[tuple, dict] = {}
    written = 0
    for cell in matrix.expand(profile, None):
        if cell.invalid is not None:
            continue
        config = cell.config
        key = (config.defense, config.attack, config.task)
        if key not in versions:
            versions[key] = behaviour.of_config(config)
        record = {**base, "config": config.to_dict(), "config_hash": config.hash(),
                  "versions": versions[key]}
        record["record_hash"] = store.record_hash(record)
        folder = store.cell_dir(root, config)
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / "run.json").write_text(json.dumps(record, sort_keys=True))
        written += 1
    return written


@pytest.fixture(scope="module")
def scale_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    profile = _profile(tmp, CELLS)
    started = time.monotonic()
    count = _synthetic_store(tmp / "results", profile)
    print(f"\nsynthetic store: {count} cells written in {time.monotonic() - started:.0f} s")
    return tmp / "results", profile, count


def test_tables_from_the_whole_store(benchmark, scale_store, tmp_path):
    root, profile, count = scale_store
    built = benchmark.pedantic(lambda: leaderboard.build(root, profile, site=tmp_path / "site",
                                                         draw=False), rounds=2, iterations=1)
    assert built.page.counts["results"] == count
    times = benchmark.stats.stats.data
    print(f"\n{count} cells: cold build {times[0]:.1f} s, warm build {times[1]:.1f} s")
