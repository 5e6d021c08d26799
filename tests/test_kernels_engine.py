"""Engine speed work (issue 8): the faster step computes the same thing; profile-step
reports every stage; the pytest-benchmark suite runs."""
import json
import os
import subprocess
import sys

import pytest
import torch

from attacks.little import coordinate_std
from benchmark.cli import main
from benchmark.cli.profile_step import STAGES, profile
from benchmark.config import make_config
from benchmark.engine import Simulation, _rows_unchanged
from benchmark.plugins import DEFENSE_MODIFIED, PluginFailure
from tests.conftest import REPO

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine: CUDA path not run")


def digits_config(**overrides):
    settings = dict(task="digits", defense="median", attack="little", f=2, steps=20)
    return make_config(**{**settings, **overrides})


def test_two_pass_std_is_torch_std():
    generator = torch.Generator().manual_seed(0)
    for rows in (2, 3, 27):
        x = 0.3 + 0.01 * torch.randn(rows, 1_000, generator=generator)
        assert torch.allclose(coordinate_std(x, x.mean(dim=0)), x.std(dim=0), rtol=1e-5, atol=0)
    x = torch.tensor([[float("nan"), 1.0], [2.0, float("inf")], [3.0, 4.0]])
    assert coordinate_std(x, x.mean(dim=0)).isnan().all() and x.std(dim=0).isnan().all()


def test_defense_sees_the_concatenation_in_the_shuffled_order():
    sim = Simulation(digits_config())
    seen = []
    defense = sim.defense
    sim.defense = lambda gradients: (seen.append(gradients.clone()), defense(gradients))[1]
    honest, byzantine = torch.randn(9, 4_810), torch.randn(2, 4_810)
    replay = torch.Generator()
    replay.set_state(sim.shuffle_generator.get_state())
    sim._aggregate(sim._shuffle_honest(honest), byzantine)
    permutation = torch.randperm(11, generator=replay)
    assert torch.equal(seen[0], torch.cat([honest, byzantine])[permutation])


@pytest.mark.parametrize("row", [0, 3, 10])
def test_guard_catches_one_changed_bit_in_any_row(row):
    honest, byzantine = torch.randn(8, 50), torch.full((3, 50), float("nan"))
    position = torch.randperm(11)
    shuffled = torch.empty(11, 50)
    shuffled[position] = torch.cat([honest, byzantine])
    assert _rows_unchanged(shuffled, position, honest, byzantine)  # NaN rows compare equal
    shuffled.view(torch.int32)[position[row], 7] ^= 1  # a NaN stays NaN, other payload
    assert not _rows_unchanged(shuffled, position, honest, byzantine)


def test_an_attack_that_writes_to_honest_behind_torchs_back_fails_the_step(plugin_dir):
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "attacks", "numpywriter", """
        from benchmark.api import Attack
        def attack(honest, f, defense):
            honest.numpy()[0, 0] += 1.0  # in place, invisible to torch's version counter
            return honest[:f].clone()
        attack = Attack(name="numpywriter", attack=attack)
    """)
    sim = Simulation(digits_config(attack="numpywriter"))
    with pytest.raises(PluginFailure, match="attack modified the honest vectors"):
        sim.step()


def test_a_defense_that_modifies_its_input_fails_the_step(plugin_dir):
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "defenses", "sorter", """
        from benchmark.api import Defense
        def aggregate(gradients, f):
            gradients.numpy().sort(axis=0)  # in place, behind torch's back
            return gradients[len(gradients) // 2].clone()
        defense = Defense(name="sorter", aggregate=aggregate)
    """)
    sim = Simulation(digits_config(defense="sorter"))
    with pytest.raises(PluginFailure, match="modified its input"):
        sim.step()


def test_a_numpy_write_that_reaches_byzantine_rows_is_blamed_on_the_defense(plugin_dir):
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "defenses", "shifter", """
        from benchmark.api import Defense
        def aggregate(gradients, f):
            gradients.numpy()[:] += 1.0  # every row, behind torch's back
            return gradients.mean(dim=0)
        defense = Defense(name="shifter", aggregate=aggregate)
    """)
    sim = Simulation(digits_config(defense="shifter"))
    with pytest.raises(PluginFailure) as failure:
        sim.step()
    assert str(failure.value) == DEFENSE_MODIFIED


def test_profile_reports_every_stage_and_the_fused_ratio():
    result = profile(digits_config(), repeat=2, warmup=1)
    assert list(result["stages_ms"]) == list(STAGES)
    assert all(ms >= 0 for stage, ms in result["stages_ms"].items() if stage != "other")
    assert result["step_ms"] >= sum(ms for s, ms in result["stages_ms"].items() if s != "other") * 0.5
    assert result["fused_forward_backward_ms"] > 0 and result["samples"] == 9 * 32
    assert result["ratio_to_fused"] == pytest.approx(result["step_ms"]
                                                     / result["fused_forward_backward_ms"])


def test_the_harness_own_work_leaves_out_the_attack_plugins_work(plugin_dir):
    """The attack stage is the plugin's own work (here 20 ms of CPU a call, against about
    a millisecond for a digits step): the harness's own work does not contain it."""
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "attacks", "spinner", """
        import time
        from benchmark.api import Attack
        def attack(honest, f, defense):
            start = time.thread_time()
            while time.thread_time() - start < 0.02:
                pass
            return honest[:f].clone()
        attack = Attack(name="spinner", attack=attack)
    """)
    result = profile(digits_config(attack="spinner"), repeat=3, warmup=1)
    assert result["stages_ms"]["attack"] >= 20
    assert result["harness_ms"] < 20
    assert result["harness_to_fused"] == pytest.approx(result["harness_ms"]
                                                       / result["fused_forward_backward_ms"])


@pytest.mark.parametrize("servers", [1, 3])
def test_instrument_hands_every_stage_to_the_hook_and_keeps_the_results(servers):
    """profile-step's hook: every stage of a step goes through `wrap` (the servers' too
    when replicated), and a wrapped run computes exactly what a plain one does."""
    config = digits_config(steps=3, servers=servers, byzantine_servers=0)
    plain, wrapped = Simulation(config), Simulation(config)
    calls = []

    class Counted:  # behaves as the original: calls counted, attributes forwarded
        def __init__(self, label, target):
            self.label, self.target = label, target

        def __call__(self, *args, **kwargs):
            calls.append(self.label)
            return self.target(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.target, name)

    def wrap(label, target):
        return Counted(label, target)

    wrapped.instrument(wrap)
    for _ in range(2):
        expected, got = plain.step(), wrapped.step()
        assert got == expected or all(str(got[k]) == str(expected[k]) for k in expected)
    assert torch.equal(plain.theta, wrapped.theta)
    labels = {"gradients", "momentum", "aggregate", "defense", "attack", "update", "metrics"}
    assert set(calls) == labels | ({"servers"} if servers > 1 else set())


def test_profile_step_command_prints_the_breakdown(capsys):
    assert main(["profile-step", "--defense", "krum", "--attack", "little", "--f", "2",
                 "--repeat", "2", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for stage in STAGES + ("step",):
        assert any(line.split()[:1] == [stage] for line in lines), stage
    assert any("step / fused" in line for line in lines)
    assert main(["profile-step", "--repeat", "1", "--warmup", "0", "--no-baseline",
                 "--json"]) == 0
    assert "ratio_to_fused" not in json.loads(capsys.readouterr().out)
    assert main(["profile-step", "--repeat", "0"]) == 2
    assert main(["profile-step", "--steps", "5"]) == 2


@needs_cuda
def test_profile_on_cuda():
    result = profile(digits_config(device="cuda"), repeat=2, warmup=1)
    assert result["config"]["device"] == "cuda" and result["step_ms"] > 0


@pytest.mark.slow
def test_benchmark_suite_runs_in_quick_mode():
    env = {**os.environ, "BENCH_QUICK": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
         "benchmarks/test_kernels.py", "benchmarks/test_engine_step.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
