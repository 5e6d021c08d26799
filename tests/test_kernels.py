"""The kernel micro-benchmark: its plan, its records, its JSON, its child processes."""
import json
import math

import pytest
import torch

from benchmark import kernels
from benchmark.cli import main
from tests.plugin_fixtures import write_plugin

FIELDS = {"defense": str, "n": int, "f": int, "d": int, "device": str, "median_ms": float,
          "ratio_to_mean": float, "ratio_to_gram": float}
FAST = kernels.Settings(warmup=0, rounds=2, min_rounds=1, case_timeout=60)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine: CUDA path not run")


def check_record(record, device="cpu"):
    for field, kind in FIELDS.items():
        assert isinstance(record[field], kind), (field, record)
    assert record["device"] == device
    assert record["median_ms"] > 0 and math.isfinite(record["median_ms"])
    assert record["ratio_to_mean"] == pytest.approx(record["median_ms"] / record["mean_ms"])
    assert record["ratio_to_gram"] == pytest.approx(record["median_ms"] / record["gram_ms"])


def test_quick_run_writes_every_registered_defense(cli, tmp_path):
    from benchmark import registry
    output = tmp_path / "cpu.json"
    result = cli("kernels", "--quick", "--output", str(output))
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())
    machine = document["machine"]
    assert machine["device"] == "cpu" and machine["threads"] == 1
    assert {"cpu", "torch", "numpy", "python", "date"} <= set(machine)
    for record in document["results"]:
        check_record(record)
        assert (record["n"], record["d"]) == (11, 1000)
    seen = {r["defense"] for r in document["results"]} | {s["defense"] for s in document["skipped"]}
    assert seen == set(registry.names("defense"))
    assert {h["kernel"] for h in document["helpers"]} >= {"pairwise_sq_distances"}
    assert "average" in result.stdout and "x gram" in result.stdout


def test_quick_run_without_output_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["kernels", "--quick", "--defense", "average"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_plan_times_the_largest_valid_f_once():
    cases, skipped = kernels.plan(["bulyan"], [(51, 24, 79_510), (51, 12, 79_510)])
    assert [(c.n, c.f, c.f_requested) for c in cases] == [(51, 12, 12)]
    assert skipped[0]["f"] == 24 and "timed at f=12" in skipped[0]["reason"]
    cases, _ = kernels.plan(["median", "nnm"], [(11, 5, 10), (11, 9, 10)])
    assert [(c.defense, c.f) for c in cases] == [("median", 5), ("nnm", 5)]


def test_plan_skips_a_rule_that_accepts_no_f(plugin_dir):
    write_plugin(plugin_dir, "defenses", "picky", """
        from benchmark.api import Defense
        defense = Defense(name="picky", aggregate=lambda g, f: g.mean(dim=0),
                          check=lambda n, f: "never valid")
    """)
    cases, skipped = kernels.plan(["picky"], [(7, 2, 10)])
    assert cases == [] and skipped == [{"defense": "picky", "n": 7, "f": 2, "d": 10,
                                        "reason": "never valid"}]


def test_measure_gives_a_record_with_its_target():
    record = kernels.measure(kernels.Case("mda", 30, 10, 2_048, 10), "cpu", FAST)
    check_record(record)
    assert record["target"] == "< 50 ms"
    assert record["meets_target"] == (record["median_ms"] < 50)
    assert record["clock"] == "thread" and record["wall_ms"] > 0


def test_targets_follow_the_issue():
    assert kernels.target_of("median", 51, 24, 79_510)[:2] == ("ratio_to_mean", "<= 5x mean")
    assert kernels.target_of("phocas", 51, 12, 79_510)[1:] == ("<= 8x mean", 8.0)
    assert kernels.target_of("multi-krum", 51, 12, 79_510)[0] == "ratio_to_gram"
    assert kernels.target_of("krum:m=3", 51, 24, 79_510)[0] == "ratio_to_gram"
    assert kernels.target_of("median", 25, 5, 1_310_922) is None
    assert kernels.target_of("average", 51, 24, 79_510) is None


def test_input_is_attacked_rows_in_a_seeded_order():
    x = kernels.attacked_input(9, 3, 50, 0, "cpu")
    assert torch.equal(x, kernels.attacked_input(9, 3, 50, 0, "cpu"))
    rows = {tuple(row.tolist()) for row in x}
    assert len(rows) == 9 - 3 + 1  # the f attack rows are identical


def test_a_stuck_or_broken_rule_is_skipped_and_the_sweep_goes_on(plugin_dir):
    write_plugin(plugin_dir, "defenses", "broken", """
        from benchmark.api import Defense
        def aggregate(gradients, f):
            raise RuntimeError("no luck")
        defense = Defense(name="broken", aggregate=aggregate)
    """)
    write_plugin(plugin_dir, "defenses", "stuck", """
        import time
        from benchmark.api import Defense
        def aggregate(gradients, f):
            time.sleep(120)
        defense = Defense(name="stuck", aggregate=aggregate)
    """)
    cases = [kernels.Case(name, 5, 1, 20, 1) for name in ("broken", "stuck", "average")]
    settings = kernels.Settings(warmup=0, rounds=1, min_rounds=1, case_timeout=3)
    records, skipped = kernels.run_cases(cases, "cpu", settings)
    reasons = {s["defense"]: s["reason"] for s in skipped}
    assert reasons["broken"] == "RuntimeError: no luck"
    assert reasons["stuck"].startswith("timed out after 3 s")
    assert [r["defense"] for r in records] == ["average"]


def test_results_of_one_defense_replace_only_its_own(tmp_path):
    path = tmp_path / "cpu.json"
    machine = {"device": "cpu", "cpu": "x", "threads": 1, "torch": "t"}
    record = dict(defense="median", n=5, f=1, d=9, device="cpu", median_ms=1.0,
                  ratio_to_mean=2.0, ratio_to_gram=0.5)
    kernels.write_results(path, machine, FAST, [record, {**record, "defense": "krum"}], [],
                          [], merge=False)
    kernels.write_results(path, machine, FAST, [{**record, "median_ms": 3.0}], [], [],
                          merge=True)
    results = json.loads(path.read_text())["results"]
    assert {(r["defense"], r["median_ms"]) for r in results} == {("median", 3.0), ("krum", 1.0)}
    notes = kernels.write_results(path, {**machine, "cpu": "other"}, FAST, [record], [], [],
                                  merge=True)
    assert notes and len(json.loads(path.read_text())["results"]) == 1


@pytest.mark.parametrize("arguments, message", [
    (["--shape", "5,7,10"], "0 <= f < n"),
    (["--shape", "5,x"], "N,F,D"),
    (["--defense", "nosuchrule"], "unknown defense"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_input_exits_2(arguments, message, capsys):
    assert main(["kernels", "--quick", *arguments]) == 2
    assert message in capsys.readouterr().err


@no_cuda
def test_cuda_is_refused_with_the_fix_when_absent(capsys):
    assert main(["kernels", "--quick", "--device", "cuda"]) == 2
    assert "run with --device cpu" in capsys.readouterr().err


@needs_cuda
def test_kernels_on_cuda(tmp_path):
    record = kernels.measure(kernels.Case("median", 11, 2, 1_000, 2), "cuda", FAST)
    check_record(record, device="cuda")
    assert record["clock"] == "wall"
    records, skipped = kernels.run_cases([kernels.Case("krum", 11, 2, 1_000, 2)], "cuda", FAST)
    assert not skipped and records[0]["device"] == "cuda"


def _fake_peer(monkeypatch, aggregate):
    """A stand-in for an installed peer library, implementing `median`."""
    from benchmark import peers
    monkeypatch.setattr(peers, "peer_of", lambda label, f: (
        ("fakepeer 1.0", aggregate) if label == "median" else None))


def test_an_installed_peer_is_timed_beside_the_rule_and_its_agreement_recorded(monkeypatch):
    _fake_peer(monkeypatch, lambda x: x.median(dim=0).values)
    record = kernels.measure(kernels.Case("median", 11, 2, 1_000, 2), "cpu", FAST)
    check_record(record)
    assert record["peer"] == "fakepeer 1.0" and record["peer_agrees"] is True
    assert record["ratio_to_peer"] == pytest.approx(record["median_ms"] / record["peer_ms"])
    assert "peer" not in kernels.measure(kernels.Case("trmean", 11, 2, 1_000, 2), "cpu", FAST)


def test_a_peer_computing_something_else_is_marked_as_not_agreeing(monkeypatch):
    _fake_peer(monkeypatch, lambda x: x.mean(dim=0))
    record = kernels.measure(kernels.Case("median", 11, 2, 1_000, 2), "cpu", FAST)
    assert record["peer_agrees"] is False


def test_without_the_peer_library_no_peer_is_offered(monkeypatch):
    from benchmark import peers
    monkeypatch.setattr(peers, "byzfl_version", lambda: None)
    assert peers.peer_of("median", 2) is None
    assert peers.peer_of("median:x=1", 2) is None and peers.peer_of("nnm+median", 2) is None


def test_byzfl_agrees_with_our_coordinate_wise_rules_where_installed():
    from benchmark import peers
    pytest.importorskip("byzfl")
    x = kernels.attacked_input(11, 2, 1_000, 0, "cpu")
    for rule in ("average", "median", "trmean"):
        _, peer = peers.peer_of(rule, 2)
        assert peers.agrees(kernels.kernel_function(rule, 2, 0)(x), peer(x)), rule


def test_every_timed_cpu_call_starts_after_the_caches_are_cleared(monkeypatch):
    """A 16 MB input stays in a 32 MB cache or not depending on the call before it; so
    each timed call (rule, mean, Gram) follows an eviction, and no other work does."""
    events = []
    monkeypatch.setattr(kernels, "evict_caches", lambda: events.append("evict"))
    functions = {name: (lambda name=name: events.append(name)) for name in ("mean", "rule")}
    settings = kernels.Settings(warmup=1, rounds=2, min_rounds=1)
    _, _, rounds = kernels.interleaved_medians(functions, "cpu", settings)
    assert events[:2] == ["mean", "rule"]  # the warm-up calls: not timed, no eviction
    assert events[2:] == ["evict", "mean", "evict", "rule"] * rounds


def test_the_eviction_buffer_is_twice_the_last_level_cache():
    from benchmark import timing
    timing.evict_caches()
    buffer = timing.eviction_buffer()
    size = buffer.numel() * buffer.element_size()
    assert size == 2 * timing._last_level_cache_bytes() >= 2 << 20
