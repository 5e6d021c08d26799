"""Replicated parameter servers (ByzSGD): one server is the plain run, correct servers
without Byzantine ones stay together, Byzantine servers are contained, bad settings are
refused before anything is written, and a replicated run resumes from its checkpoint."""
import pytest
import torch

from benchmark import engine, registry
from benchmark.cells import run_cell
from benchmark.config import PLACEMENTS, RunConfig, make_config

from tests.test_checkpoint import files_of, stop_and_resume

DIGITS = dict(task="digits", n=11, f=2, attack="little", steps=6, eval_every=3, seed=2)
SERVER_ATTACKS = [name for name in registry.names("server_attack") if name != "none"]


def rows_of(config):
    sim = engine.Simulation(config)
    evals = [sim.evaluate()]
    steps = []
    for _ in range(config.steps):
        steps.append(sim.step())
        if sim.step_index % config.eval_every == 0:
            evals.append(sim.evaluate())
    return steps, evals, sim


def same_rows(first, second):
    """Equal, NaN included (NaN == NaN here)."""
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
        for a, b in zip(first, second))


def test_server_settings_are_neutral_in_the_hash():
    assert make_config(**DIGITS, servers=1).hash() == make_config(**DIGITS).hash()
    defaults = {name: getattr(RunConfig, name) for name in
                ("servers", "byzantine_servers", "gather_every", "gather_rule", "pull_rule",
                 "server_attack", "worker_equivocation")}
    from benchmark.config import NEUTRAL
    assert all(NEUTRAL[name] == value for name, value in defaults.items())


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_one_server_is_the_plain_run(placement):
    plain = make_config(**DIGITS, defense="median", momentum_at=placement)
    # with one server the other settings cannot act: same rows, bit for bit
    one = make_config(**DIGITS, defense="median", momentum_at=placement, servers=1,
                      gather_every=2, gather_rule="trmean", pull_rule="krum")
    steps, evals, _ = rows_of(plain)
    one_steps, one_evals, _ = rows_of(one)
    assert same_rows(steps, one_steps) and same_rows(evals, one_evals)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_without_byzantine_servers_a_gather_every_step_keeps_servers_identical(placement):
    # average sums in each server's own shuffled order, so servers differ in their last
    # bits after a step; the median of the (identical) gathered models makes them equal
    config = make_config(**DIGITS, defense="average", momentum_at=placement, servers=3,
                         gather_every=1)
    steps, evals, sim = rows_of(config)
    assert len(sim.replicas.servers) == 3
    assert all(row["server_drift"] == 0 and row["gathered"] == 1 for row in steps)
    first = sim.replicas.servers[0].theta
    assert all(torch.equal(server.theta, first) for server in sim.replicas.servers)
    assert all(row["worst_accuracy"] == row["median_accuracy"] for row in evals)


def test_equivocating_workers_pull_the_correct_servers_apart_and_gathers_bring_them_back():
    # median is order-invariant: correct servers that get the same rows stay identical
    settings = dict(DIGITS, defense="median", momentum_at="worker", steps=8, servers=3)
    same, _, _ = rows_of(make_config(**settings, gather_every=100))
    apart, _, sim = rows_of(make_config(**settings, gather_every=100, worker_equivocation=True))
    gathered, _, _ = rows_of(make_config(**settings, gather_every=1, worker_equivocation=True))
    assert all(row["server_drift"] == 0 for row in same)
    assert all(row["server_drift"] > 0 for row in apart)
    assert not torch.equal(sim.replicas.servers[0].theta, sim.replicas.servers[1].theta)
    assert all(row["server_drift"] == 0 for row in gathered)


def test_the_odd_servers_get_the_mirror_image_about_the_honest_mean():
    from benchmark.stages.adversary import Adversary
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    byzantine = torch.tensor([[0.0, 0.0], [5.0, -1.0]])
    mirrored = Adversary.equivocated(byzantine, honest)
    assert torch.equal(mirrored, torch.tensor([[4.0, 6.0], [-1.0, 7.0]]))
    assert torch.equal(mirrored.mean(0) + byzantine.mean(0), 2 * honest.mean(0))


@pytest.mark.parametrize("server_attack", SERVER_ATTACKS)
def test_byzantine_servers_are_contained_and_digits_learns(server_attack):
    f_ps = 1
    config = make_config(task="digits", n=11, f=2, attack="little", defense="mda",
                         momentum_at="worker", steps=40, eval_every=20, seed=1,
                         servers=3 * f_ps + 2, byzantine_servers=f_ps, gather_every=5,
                         server_attack=server_attack)
    steps, evals, sim = rows_of(config)
    assert len(sim.replicas.servers) == 3 * f_ps + 1 + (server_attack == "none")
    assert sum(row["gathered"] for row in steps) == 8
    assert max(row["server_drift_ratio"] for row in steps) < 0.05
    assert evals[-1]["worst_accuracy"] > 0.75


def test_drift_is_recorded_in_the_stored_summary(tmp_path):
    config = make_config(**DIGITS, defense="mda", servers=5, byzantine_servers=1,
                         gather_every=2, server_attack="equivocation")
    result = run_cell(config, tmp_path)
    summary = result.summary
    assert result.status == "ok" and summary["gathers"] == 3
    assert summary["max_server_drift"] is not None and summary["final_worst_accuracy"] > 0
    header = (result.folder / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"server_drift", "server_drift_ratio", "gathered"} <= set(header)
    header = (result.folder / "eval.csv").read_text().splitlines()[0].split(",")
    assert {"worst_accuracy", "median_accuracy"} <= set(header)
    import gzip
    trace = gzip.decompress((result.folder / "trace.csv.gz").read_bytes()).decode()
    assert trace.splitlines()[0].endswith(",server_drift,server_drift_ratio")


def test_a_replicated_run_resumes_to_the_same_files(tmp_path, monkeypatch):
    settings = dict(DIGITS, steps=10, defense="mda", servers=5, byzantine_servers=1,
                    gather_every=3, server_attack="stale", momentum_at="update")
    whole = run_cell(make_config(**settings), tmp_path / "whole")
    resumed = stop_and_resume(make_config(**settings, checkpoint_every=4), tmp_path / "cut",
                              monkeypatch, stop=6)
    assert files_of(resumed.folder) == files_of(whole.folder)


@pytest.mark.parametrize("args, message", [
    (["--servers", "3", "--byzantine-servers", "1", "--server-attack", "silence"],
     "a pull with servers=3, byzantine_servers=1 and server attack 'silence' combines 2 "
     "models, 2 of them from correct servers, which pull_rule 'median' cannot use: "),
    (["--servers", "3", "--byzantine-servers", "1", "--server-attack", "silence"],
     "Raise servers or lower byzantine_servers"),
    (["--servers", "4", "--byzantine-servers", "1", "--gather-rule", "cclip"],
     "gather_rule 'cclip' is stateful or needs server data; a model rule must be a plain "
     "function of the models it gets"),
    (["--servers", "4", "--byzantine-servers", "1", "--defense", "fltrust"],
     "defense 'fltrust' uses the server's own root data (server_gradient), which replicated "
     "servers do not hold: run it with servers=1"),
    (["--servers", "2", "--byzantine-servers", "1"], "median needs n >= 2f+1"),
    (["--servers", "4", "--byzantine-servers", "1", "--gather-rule", "krum"], "gather"),
    (["--servers", "3", "--byzantine-servers", "3"], "byzantine_servers must be in [0, servers)"),
    (["--servers", "4", "--server-attack", "nope"], "known server_attacks"),
    (["--worker-equivocation"], "worker_equivocation needs at least 2 correct servers"),
    (["--servers", "3", "--byzantine-servers", "2", "--worker-equivocation"],
     "worker_equivocation needs at least 2 correct servers"),
])
def test_a_gather_or_pull_with_too_few_correct_models_is_refused(capsys, tmp_path, args,
                                                                  message):
    from benchmark.cli import main
    out = tmp_path / "results"
    assert main(["cell", *args, "--steps", "2", "--results", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_cell_command_reports_the_servers(cli, tmp_path):
    done = cli("cell", "--defense", "mda", "--servers", "5", "--byzantine-servers", "1",
               "--gather-every", "2", "--server-attack", "stale", "--steps", "4",
               "--results", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 servers (1 Byzantine, stale), gather every 2 steps" in done.stdout


@pytest.mark.parametrize("method", ["fused", "vmap", "loop"])
def test_gradients_at_per_worker_models_match_one_model_at_a_time(method):
    from torch import nn
    from benchmark.gradients import ModelFunctions
    from tasks._vision import MNIST_STATS, ImageInput
    torch.manual_seed(0)
    model = nn.Sequential(ImageInput(MNIST_STATS, flip=False), nn.Flatten(),
                          nn.Linear(36, 20, bias=False), nn.ReLU(), nn.Linear(20, 12),
                          nn.ReLU(), nn.Linear(12, 10))
    inputs = torch.randint(0, 256, (4, 9, 6, 6), dtype=torch.uint8)
    targets = torch.randint(0, 10, (4, 9), generator=torch.Generator().manual_seed(1))
    functions = ModelFunctions(model, nn.functional.cross_entropy, method)
    thetas = functions.initial_parameters() + 0.1 * torch.randn(4, functions.dimension)
    gradients, losses = functions.gradients_at(thetas, inputs, targets, l2=0.01)
    for worker in range(4):
        expected, expected_loss = functions.worker_gradients(
            thetas[worker].clone(), inputs[worker:worker + 1], targets[worker:worker + 1],
            l2=0.01)
        torch.testing.assert_close(gradients[worker], expected[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[worker], expected_loss[0], rtol=1e-6, atol=1e-7)


def test_the_template_server_attack_runs_and_stays_out_of_listings():
    assert "template" not in registry.names("server_attack")
    config = make_config(**DIGITS, defense="median", servers=4, byzantine_servers=1,
                         server_attack="template", gather_every=2)
    steps, evals, _ = rows_of(config)
    assert sum(row["gathered"] for row in steps) == 3 and evals[-1]["worst_accuracy"] > 0.3


@pytest.mark.parametrize("pull_rule, moved", [("median", False), ("average", True)])
def test_a_byzantine_server_moves_the_workers_only_through_a_non_robust_pull(pull_rule,
                                                                          moved):
    def final_models(server_attack):
        config = make_config(**DIGITS, defense="median", servers=4, byzantine_servers=1,
                             gather_every=100, pull_rule=pull_rule,
                             server_attack=server_attack)
        return rows_of(config)[2].replicas.models()[:3]
    # no gather in 6 steps: only the pulled models can carry the Byzantine server's model
    difference = float((final_models("model-empire") - final_models("none")).abs().max())
    assert (difference > 1e-3) == moved, difference


def test_two_servers_are_replicated_and_one_correct_server_has_no_drift():
    """servers=2 is already the replicated protocol (drift recorded); with one of the two
    Byzantine, the only correct model drifts from nothing."""
    common = dict(task="digits", defense="median", attack="little", steps=2)
    two = engine.Simulation(make_config(**common, servers=2, worker_equivocation=True))
    rows = [two.step() for _ in range(2)]
    assert all("server_drift" in row for row in rows) and rows[0]["server_drift"] > 0
    alone = engine.Simulation(make_config(**common, servers=2, byzantine_servers=1,
                                          pull_rule="average", gather_rule="average",
                                          server_attack="model-little"))
    assert [alone.step()["server_drift"] for _ in range(2)] == [0.0, 0.0]
