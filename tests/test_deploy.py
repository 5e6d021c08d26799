"""`deploy`: the server protocol on real processes (gloo over loopback) runs, learns, is
timed, and a process that dies or hangs stops it with an error naming that process."""
import json

import pytest
import torch

from benchmark import deploy
from benchmark.cli import main
from benchmark.config import make_config

SMALL = ["--n", "4", "--f", "1", "--steps", "8", "--warmup", "2"]


def test_both_protocols_run_and_report_steps_per_second(capsys):
    assert main(["deploy", *SMALL, "--servers", "4", "--byzantine-servers", "1",
                 "--server-attack", "model-little", "--gather-every", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"vanilla", "byzsgd"}
    assert results["vanilla"]["processes"] == 5 and results["byzsgd"]["processes"] == 8
    assert all(result["steps_per_second"] > 0 and result["steps_timed"] == 6
               for result in results.values())


def test_replicated_servers_learn_on_processes():
    config = make_config(task="digits", defense="mda", n=5, f=1, steps=30, servers=4,
                         byzantine_servers=1, server_attack="equivocation", gather_every=5)
    assert deploy.run(config, warmup=1, timeout=60)["accuracy"] > 0.7


@pytest.mark.parametrize("fault, message", [
    ("kill:5:3", "process 5 (worker 1) was killed by signal 9"),
    ("kill:1:3", "process 1 (server 1) was killed by signal 9"),
    ("hang:2:4", "process(es) 2 (server 2) hung"),
])
def test_a_dead_or_hung_process_stops_the_deployment_naming_it(capsys, fault, message):
    assert main(["deploy", *SMALL, "--servers", "4", "--byzantine-servers", "1",
                 "--protocol", "byzsgd", "--timeout", "3", "--fault", fault]) == 1
    assert message in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--attack", "little"], "honest workers only"),
    (["--servers", "1", "--protocol", "byzsgd"], "--servers 2 or more"),
    (["--servers", "3", "--byzantine-servers", "1", "--server-attack", "silence"],
     "median needs n >= 2f+1"),
])
def test_bad_deploy_settings_exit_2(capsys, args, message):
    assert main(["deploy", *SMALL, *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra", [
    dict(momentum_at="worker", nesterov=True),
    dict(momentum_at="update"),
    dict(servers=3, gather_every=2),
    dict(defense="average", clip=0.5),
], ids=["worker-nesterov", "update", "3-servers", "average-clipped"])
def test_the_deployment_follows_the_simulation_of_the_same_config(extra):
    """Same seed, same batches, same submissions: server 0's parameters after 5 steps on
    processes are the simulation's (attack none), bit for bit with the order-invariant
    median, within 1e-6 with the average (rows summed in another order)."""
    from benchmark.engine import Simulation
    config = make_config(**{**dict(task="digits", defense="median", attack="none", n=4, f=1,
                                   steps=5, seed=3), **extra})
    simulation = Simulation(config)
    for _ in range(config.steps):
        simulation.step()
    deployed = deploy.run(config, warmup=1, timeout=60)["parameters"]
    assert not torch.equal(simulation.theta, simulation.theta0)  # it trained
    if config.defense == "median":
        assert torch.equal(deployed, simulation.theta)
    else:
        assert (deployed - simulation.theta).abs().max() <= 1e-6


@pytest.mark.parametrize("attack, equivocates", [("equivocation", True),
                                                 ("model-little", False)])
def test_a_byzantine_server_sends_each_worker_its_own_model(attack, equivocates):
    """`equivocation` sends the even-numbered recipients mean + push and the odd ones
    mean - push; with the average as pull rule, the workers' first pulled models then
    differ by parity and agree within it. A non-equivocating attack sends all the same."""
    config = make_config(task="digits", defense="median", n=4, f=1, steps=2, servers=3,
                         byzantine_servers=1, server_attack=attack, pull_rule="average")
    pulls = deploy.run(config, warmup=0, timeout=60)["first_pulls"]
    assert pulls.shape[0] == 4
    assert torch.equal(pulls[0], pulls[2]) and torch.equal(pulls[1], pulls[3])
    assert torch.equal(pulls[0], pulls[1]) is not equivocates
