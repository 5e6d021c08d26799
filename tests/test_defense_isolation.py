"""Each run's defense in a process of its own (issue 19): the same bytes as in the run's
process, checkpoints across it, cheaters that look for the honest rows find nothing, and
a host that exits, hangs or runs out of memory fails only its own cell."""
import math
import os
import sys

import pytest
import torch

from benchmark import executors, store
from benchmark.config import make_config
from benchmark.engine import Simulation
from benchmark.isolated_defense import IN_PROCESS_VARIABLE
from tests.plugin_fixtures import write_plugin

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="isolation is built for Linux")


def config(defense, attack="little", **settings):
    return make_config(defense=defense, attack=attack, profile="tiny",
                       **({"steps": 12, "eval_every": 6} | settings))


def run(configs, root, in_process: bool, monkeypatch):
    monkeypatch.setenv(IN_PROCESS_VARIABLE, "1" if in_process else "0")
    return executors.run_local(configs, root, 1, lambda result: None, start_method="fork")


def stored(result) -> dict[str, bytes]:
    return {name: (result.folder / name).read_bytes() for name in ("metrics.csv", "eval.csv")}


CASES = [("median", "little", {}), ("krum", "fang-krum", {}),  # the attack probes the rule
         ("cclip", "minmax", {}), ("bucketing+cclip", "signflip", {}),  # stateful, randomized
         ("fltrust", "mimic", {}), ("signguard", "none", {}),  # server's data; selected rows
         ("median", "little", {"servers": 3, "byzantine_servers": 1,
                               "server_attack": "model-little", "gather_every": 4}),
         ("bucketing+cclip", "little", {"servers": 5, "byzantine_servers": 1,  # servers
                               # that drift apart, and randomized model rules
                               "server_attack": "model-little", "gather_every": 2,
                               "gather_rule": "bucketing:s=2+median", "pull_rule": "dnc"})]


def test_isolated_defenses_store_the_same_bytes_as_in_process(tmp_path, monkeypatch):
    configs = [config(defense, attack, **settings) for defense, attack, settings in CASES]
    inside = run(configs, tmp_path / "inside", True, monkeypatch)
    isolated = run(configs, tmp_path / "isolated", False, monkeypatch)
    assert [r.status for r in isolated] == ["ok"] * len(CASES), [r.reason for r in isolated]
    for a, b in zip(inside, isolated):
        assert stored(a) == stored(b), a.config.defense


@pytest.mark.parametrize("defense", ["cclip", "bucketing+cclip", "dnc"])
def test_a_checkpoint_carries_an_isolated_defenses_state_and_generator(defense):
    settings = config(defense, steps=40)
    whole = Simulation(settings)
    expected = [whole.step() for _ in range(10)]
    first = Simulation(settings, isolate_defense=True)
    rows = [first.step() for _ in range(5)]
    state = first.state_dict()
    first.close()
    second = Simulation(settings, isolate_defense=True)
    second.load_state_dict(state)
    rows += [second.step() for _ in range(5)]
    second.close()
    assert repr(rows) == repr(expected)  # repr: NaN equals NaN


PEEKER = """
    import gc
    import sys
    from benchmark.api import Defense

    def honest_rows():
        frame = sys._getframe()
        while frame is not None:  # up to the engine's `shuffled`
            found = frame.f_locals.get("shuffled")
            if found is not None and hasattr(found, "honest"):
                return found.honest
            frame = frame.f_back
        for thing in gc.get_objects():  # or anywhere in the process
            if type(thing).__name__ == "Shuffled":
                return thing.honest
        return None

    def aggregate(gradients, f):
        honest = honest_rows()
        return (gradients if honest is None else honest).mean(dim=0)

    defense = Defense(name="peeker", aggregate=aggregate)
"""


def test_a_defense_that_looks_for_the_honest_rows_finds_nothing(plugin_dir, tmp_path,
                                                               monkeypatch):
    write_plugin(plugin_dir, "defenses", "peeker", PEEKER)
    settings = dict(attack="signflip", steps=20, eval_every=20)
    (average,) = run([config("average", **settings)], tmp_path / "average", True, monkeypatch)
    (inside,) = run([config("peeker", **settings)], tmp_path / "inside", True, monkeypatch)
    (isolated,) = run([config("peeker", **settings)], tmp_path / "isolated", False,
                      monkeypatch)
    assert inside.summary["final_accuracy"] > average.summary["final_accuracy"]  # it cheats
    assert stored(isolated) == stored(average)  # isolated, it is the plain mean


def hostile(plugin_dir, name, body):
    write_plugin(plugin_dir, "defenses", name, f"""
        import os
        import time
        from benchmark.api import Defense

        def aggregate(gradients, f):
            {body}
            return gradients.mean(dim=0)

        defense = Defense(name="{name}", aggregate=aggregate)
    """)


@pytest.mark.parametrize("name, body, reason", [
    ("quitter", "os._exit(3)", "the defense's process ended while aggregating"),
    ("sleeper", "time.sleep(600)", "defense did not answer while aggregating within the "
                                   "cell's time budget"),
    ("hoarder", "bytearray(64 << 30)", "defense raised MemoryError"),
])
def test_a_hostile_defense_fails_only_its_own_cell(plugin_dir, tmp_path, monkeypatch, name,
                                                   body, reason):
    hostile(plugin_dir, name, body)
    results = run([config(name, time_budget=3), config("median")], tmp_path, False,
                  monkeypatch)
    assert [r.status for r in results] == ["failed", "ok"]
    assert reason in results[0].reason
    assert math.isfinite(results[1].summary["final_accuracy"])


SMUGGLER = """
    import os
    import pickle
    import sys
    from benchmark.api import Defense

    class Payload:  # loading it would make a folder in the run's process
        def __reduce__(self):
            return (os.mkdir, ({marker!r},))

    def send_code(connection, message):
        connection.send_bytes({tag!r} + pickle.dumps(("ok", Payload())))

    def aggregate(gradients, f):
        for module in list(sys.modules.values()):  # the host's module is __main__ there
            if hasattr(module, "send_reply"):
                module.send_reply = send_code
        return gradients.mean(dim=0)

    defense = Defense(name="smuggler", aggregate=aggregate)
"""


@pytest.mark.parametrize("tag", [b"P", b"T"])
def test_a_reply_that_names_code_fails_the_cell_and_runs_nothing_in_the_run(
        plugin_dir, tmp_path, monkeypatch, tag):
    marker = tmp_path / "ran"
    write_plugin(plugin_dir, "defenses", "smuggler", SMUGGLER.format(marker=str(marker),
                                                                      tag=tag))
    (result,) = run([config("smuggler")], tmp_path / "results", False, monkeypatch)
    assert result.status == "failed"
    assert "sent a reply that is not data while aggregating" in result.reason
    assert not marker.exists()


def test_a_host_holds_no_file_of_the_run_and_starts_in_a_scratch_folder(plugin_dir, tmp_path,
                                                                        monkeypatch):
    hostile(plugin_dir, "wanderer", f"""
            if os.getcwd().startswith({str(tmp_path)!r}) or not os.path.basename(
                    os.getcwd()).startswith("defense-host-"):
                raise RuntimeError(os.getcwd())""")
    monkeypatch.chdir(tmp_path)
    (result,) = run([config("wanderer")], tmp_path / "results", False, monkeypatch)
    assert result.status == "ok", result.reason
    assert os.listdir(result.folder.parent) == [result.folder.name]


REPLAYER = """
    import torch
    from benchmark.api import Defense
    from benchmark.engine import stream_seed

    def aggregate(gradients, f, generator, state):
        if "shuffle" not in state:  # the run's seed, from the defense's own generator
            seeds = [seed for seed in range(1000)
                     if stream_seed(seed, "defense") == generator.initial_seed()]
            state["shuffle"] = seeds and torch.Generator().manual_seed(
                stream_seed(seeds[0], "shuffle"))
        if not state["shuffle"]:
            return gradients.mean(dim=0)
        source = torch.randperm(len(gradients), generator=state["shuffle"])
        return gradients[source < len(gradients) - f].mean(dim=0)  # the honest rows

    defense = Defense(name="replayer", aggregate=aggregate, stateful=True, randomized=True)
"""


def aggregates_and_honest_means(simulation, steps):
    honest = []
    submit = simulation._submissions
    simulation._submissions = lambda sampled: honest.append(submit(sampled)) or honest[-1]
    pairs = []
    for _ in range(steps):
        simulation.step()
        pairs.append((simulation.previous_aggregate, honest[-1].mean(dim=0)))
    simulation.close()
    return pairs


def test_keyed_streams_hide_the_shuffle_from_a_defense_that_replays_it(plugin_dir):
    write_plugin(plugin_dir, "defenses", "replayer", REPLAYER)
    settings = config("replayer", attack="signflip", momentum_at="server")
    public = Simulation(settings, isolate_defense=True)
    assert all(torch.allclose(aggregate, mean, atol=1e-7)  # it finds the honest rows
               for aggregate, mean in aggregates_and_honest_means(public, 4))
    keyed = Simulation(settings, isolate_defense=True, stream_key=b"secret of the re-run")
    assert not any(torch.allclose(aggregate, mean, atol=1e-7)
                   for aggregate, mean in aggregates_and_honest_means(keyed, 4))


def test_what_an_isolated_defense_prints_reaches_stderr_and_never_blocks_it(
        plugin_dir, tmp_path, monkeypatch):
    hostile(plugin_dir, "chatty", 'print("x" * 100_000, flush=True)')
    (result,) = run([config("chatty", time_budget=60)], tmp_path, False, monkeypatch)
    assert result.status == "ok", result.reason


def board_defenses():
    from benchmark import matrix
    return matrix.profile_defenses(matrix.load_profile("board"))


@pytest.mark.parametrize("defense", board_defenses())
def test_every_board_defense_gives_the_same_rows_isolated(defense):
    settings = config(defense, attack="little", steps=4, eval_every=4)
    rows = []
    for isolated in (False, True):
        simulation = Simulation(settings, isolate_defense=isolated)
        rows.append(repr([simulation.step() for _ in range(4)] + [simulation.evaluate()]))
        simulation.close()
    assert rows[0] == rows[1]


def test_an_isolated_defense_cannot_write_its_input_and_an_attack_writing_honest_is_named(
        plugin_dir, tmp_path, monkeypatch):
    hostile(plugin_dir, "scrawler", "gradients.numpy()[0] = 0.0")
    write_plugin(plugin_dir, "attacks", "meddler", """
        from benchmark.api import Attack

        def craft(honest, f, defense):
            honest.numpy()[0] += 1.0  # through numpy: torch's version counter does not move
            return honest[:f].clone()

        attack = Attack(name="meddler", attack=craft)
    """)
    cells = [config("scrawler"), config("median", attack="meddler")]
    inside = run(cells, tmp_path / "inside", True, monkeypatch)
    isolated = run(cells, tmp_path / "isolated", False, monkeypatch)
    assert [r.status for r in inside + isolated] == ["failed"] * 4
    assert "defense modified its input gradients" in inside[0].reason  # maybe: or the attack
    assert isolated[0].reason == ("the defense's process crashed (segmentation fault) while "
                                  "aggregating, as a write to its read-only input gradients does")
    assert inside[1].reason.startswith("attack modified the honest vectors it was given, or")
    assert isolated[1].reason == "attack modified the honest vectors it was given"


def test_a_cells_cpu_time_counts_its_isolated_defenses_process(plugin_dir, tmp_path,
                                                               monkeypatch):
    hostile(plugin_dir, "burner", """
            started = time.process_time()
            while time.process_time() - started < 0.05:
                pass""")
    (result,) = run([config("burner", steps=10)], tmp_path, False, monkeypatch)
    assert result.status == "ok", result.reason
    assert store.read_run(result.folder)["timings"]["cpu_seconds"] >= 10 * 0.05


READER = """
    from benchmark.api import Defense

    def aggregate(gradients, f):
        with open("/proc/{pid}/maps") as maps:  # the run's memory, region by region
            regions = [line.split()[0].split("-") for line in maps if " r" in line]
        with open("/proc/{pid}/mem", "rb") as memory:
            start, end = (int(value, 16) for value in regions[0])
            memory.seek(start)
            memory.read(min(end - start, 4096))
        raise RuntimeError("read the run's memory")

    defense = Defense(name="reader", aggregate=aggregate)
"""


def test_a_defense_cannot_read_the_memory_of_the_process_that_holds_the_run(plugin_dir):
    from benchmark.plugins import PluginFailure

    write_plugin(plugin_dir, "defenses", "reader", READER.format(pid=os.getpid()))
    simulation = Simulation(config("reader"), isolate_defense=True)
    try:
        with pytest.raises(PluginFailure, match="PermissionError|denied"):
            simulation.step()
    finally:
        simulation.close()
