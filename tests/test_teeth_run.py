"""Issue 22, tests with teeth: `engine.run`'s schedule and outcomes, and what checkpoints
carry (model buffers, state containers, shapes), which mutation testing of the engine found
unpinned (docs/mutation-testing.md).
"""
import math
import time

import pytest
import torch

from benchmark import engine
from benchmark.config import make_config
from tests.plugin_fixtures import write_plugin


def run(**settings):
    steps, evaluations = [], []
    config = make_config(**{"task": "digits", "defense": "median", "attack": "little",
                            "steps": 10, "eval_every": 4, **settings})
    started = time.monotonic()
    outcome = engine.run(config, steps.append, evaluations.append)
    return outcome, steps, evaluations, time.monotonic() - started


def test_a_run_evaluates_at_the_start_every_eval_every_steps_and_at_the_end():
    outcome, steps, evaluations, wall = run()
    assert (outcome.status, outcome.reason, outcome.steps_done) == ("ok", None, 10)
    assert [row["step"] for row in steps] == list(range(10))
    assert [row["step"] for row in evaluations] == [0, 4, 8, 10]
    assert 0 < outcome.timings["seconds"] <= wall


def test_a_resumed_simulation_does_not_evaluate_its_first_step_again():
    config = make_config(task="digits", defense="median", attack="little", steps=6,
                         eval_every=4)
    first = engine.Simulation(config)
    for _ in range(5):
        first.step()
    resumed = engine.Simulation(config)
    resumed.load_state_dict(first.state_dict())
    evaluations = []
    outcome = engine.run(config, lambda row: None, evaluations.append, simulation=resumed)
    assert outcome.steps_done == 6
    assert [row["step"] for row in evaluations] == [6]


def test_a_run_past_its_time_budget_fails_after_the_step_with_the_reason():
    outcome, steps, _, _ = run(time_budget=1e-9)
    assert outcome.status == "failed"
    assert outcome.reason == "time budget of 1e-09 s exceeded after step 1"
    assert outcome.steps_done == 1 and len(steps) == 1


def test_a_run_within_its_time_budget_is_not_cut():
    outcome, _, _, _ = run(time_budget=3600)
    assert (outcome.status, outcome.steps_done) == ("ok", 10)


def test_a_diverging_run_ends_diverged_with_the_step_and_keeps_what_it_did():
    outcome, steps, _, _ = run(defense="average", attack="empire:factor=-1e30", clip=None,
                               momentum_at="update")
    assert outcome.status == "diverged"
    assert outcome.reason == "non-finite training loss at step 1"  # step 0's update blew up
    assert len(steps) == outcome.steps_done == 1
    assert math.isfinite(outcome.timings["seconds"])


BATCHNORM_TASK = """
    import torch
    from benchmark.api import Task
    from tasks.digits import load

    def model():
        return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
                                   torch.nn.ReLU(), torch.nn.Linear(16, 10))

    task = Task(name="batchnorm-digits", load=load, model=model,
                loss=torch.nn.functional.cross_entropy,
                defaults=dict(n=7, f=1, batch_size=16, lr=0.1, steps=6, eval_every=3))
"""


def test_a_checkpoint_carries_the_models_buffers(plugin_dir):
    """BatchNorm's running statistics move with every training forward pass: a resumed
    run must start from the saved ones, not from the new model's."""
    write_plugin(plugin_dir, "tasks", "batchnorm_digits", BATCHNORM_TASK)
    config = make_config(task="batchnorm-digits", defense="median", attack="little")
    whole = engine.Simulation(config)
    for _ in range(3):
        whole.step()
    state = whole.state_dict()
    assert any(name.endswith("running_mean") for name in state["buffers"])
    resumed = engine.Simulation(config)
    resumed.load_state_dict(state)
    for simulation in (whole, resumed):
        for _ in range(3):
            simulation.step()
    assert torch.equal(resumed.theta, whole.theta)
    assert resumed.evaluate() == whole.evaluate()
    for name, buffer in whole.functions.buffers.items():
        assert torch.equal(resumed.functions.buffers[name], buffer), name



def test_checkpoint_state_keeps_its_containers_and_namedtuples():
    from collections import namedtuple

    from benchmark.stages.state import on_device

    Pair = namedtuple("Pair", "vector count")
    state = {"history": [torch.ones(2), (torch.zeros(1), 3)], "pair": Pair(torch.ones(3), 4),
             "label": "x"}
    moved = on_device(state, torch.device("cpu"))
    assert type(moved["history"]) is list and type(moved["history"][1]) is tuple
    assert type(moved["pair"]) is Pair and moved["pair"].count == 4
    assert torch.equal(moved["pair"].vector, torch.ones(3)) and moved["label"] == "x"


def test_a_checkpoint_of_another_shape_is_refused_with_both_shapes():
    from benchmark.stages.state import restored

    with pytest.raises(ValueError, match=r"^checkpoint theta has shape \(3,\), this run "
                                         r"\(4,\)$"):
        restored("theta", torch.zeros(4), torch.zeros(3))
    copy = restored("theta", torch.zeros(2, dtype=torch.float64), torch.ones(2))
    assert copy.dtype == torch.float64 and torch.equal(copy, torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("settings", [
    {}, {"local_steps": 2}, {"defense": "fltrust", "local_steps": 2},
    {"servers": 3, "byzantine_servers": 1, "server_attack": "model-little",
     "gather_every": 2, "local_steps": 2}], ids=["plain", "local", "fltrust", "servers"])
def test_each_step_uses_and_records_the_scheduled_learning_rate(settings):
    outcome, steps, _, _ = run(steps=4, lr=0.1, lr_schedule=((2, 0.05),), **settings)
    assert outcome.status == "ok", outcome.reason
    assert [row["lr"] for row in steps] == [0.1, 0.1, 0.05, 0.05]


def test_bfloat16_rows_are_placed_where_the_shuffle_says():
    from benchmark.stages.channel import Channel

    honest = torch.arange(12, dtype=torch.bfloat16).reshape(4, 3)
    shuffled = Channel(torch.Generator().manual_seed(2), torch.device("cpu")).shuffle_honest(
        honest, 2)
    assert shuffled.matrix.dtype == torch.bfloat16
    assert torch.equal(shuffled.matrix[shuffled.position[:4]], honest)
    assert torch.equal(shuffled.permutation[shuffled.position], torch.arange(6))


ACCUMULATING = """
    import torch
    from benchmark.api import Attack, Defense

    def aggregate(gradients, f, state):
        state.setdefault("total", torch.zeros(gradients.shape[1])).add_(gradients[0])
        return gradients.mean(dim=0)

    def craft(honest, f, defense, state):
        state.setdefault("total", torch.zeros(honest.shape[1])).add_(honest[0])
        return honest[:f] * -1.0

    defense = Defense(name="accumulating", aggregate=aggregate, stateful=True)
    attack = Attack(name="accumulating", attack=craft, stateful=True)
"""


def test_a_checkpoint_holds_copies_of_the_plugins_state_never_the_live_tensors(plugin_dir):
    """A stateful defense or attack that updates a tensor of its state in place must not
    change a checkpoint already taken, nor the one it was restored from."""
    write_plugin(plugin_dir, "defenses", "accumulating", ACCUMULATING)
    write_plugin(plugin_dir, "attacks", "accumulating", ACCUMULATING)
    config = make_config(task="digits", defense="accumulating", attack="accumulating",
                         steps=4)
    simulation = engine.Simulation(config)
    simulation.step()
    saved = simulation.state_dict()
    def saved_totals():  # the defense's states, one per component; the attack's state
        return saved["defense_states"][0]["total"], saved["attack_states"]["total"]

    totals = [total.clone() for total in saved_totals()]
    simulation.step()
    resumed = engine.Simulation(config)
    resumed.load_state_dict(saved)
    resumed.step()
    for total, before in zip(saved_totals(), totals):
        assert torch.equal(total, before)


HUGE = """
    import torch
    from benchmark.api import Defense

    def aggregate(gradients, f):
        return torch.full((gradients.shape[1],), 3e38)  # finite, but not once scaled by lr

    defense = Defense(name="huge", aggregate=aggregate)
"""


@pytest.mark.parametrize("servers", [{}, {"servers": 3, "byzantine_servers": 1,
                                           "server_attack": "model-little"}],
                         ids=["one server", "replicated"])
def test_a_run_whose_parameters_overflow_diverges_after_that_step(plugin_dir, servers):
    write_plugin(plugin_dir, "defenses", "huge", HUGE)
    outcome, steps, _, _ = run(defense="huge", lr=10.0, **servers)
    assert outcome.status == "diverged"
    assert outcome.reason == "non-finite parameters after step 0"
    assert outcome.steps_done == 0 and steps == []


def test_a_replicated_run_with_a_non_finite_loss_diverges_with_the_step():
    outcome, _, _, _ = run(defense="average", attack="empire:factor=-1e30", clip=None,
                           momentum_at="update", servers=3, byzantine_servers=1,
                           server_attack="model-little", pull_rule="average",
                           gather_rule="average")
    assert outcome.status == "diverged"
    assert outcome.reason == "non-finite training loss at step 1"


def test_keyed_streams_are_seeded_from_the_key_the_run_seed_the_stream_and_its_index():
    """Under a secret key (`verify --keyed`) the streams a defense could use to find the
    rows (the shuffle, the defenses', the replicated servers') are seeded by keyed_seed of
    all four; the others keep stream_seed."""
    from benchmark.streams import keyed_seed, stream_seed

    config = make_config(task="digits", defense="median", attack="little", steps=1, seed=7,
                         servers=3, byzantine_servers=1, server_attack="model-little")
    key = b"a secret the defense cannot read"
    simulation = engine.Simulation(config, stream_key=key)
    assert simulation.channel.generator.initial_seed() == keyed_seed(key, 7, "shuffle", 0)
    assert simulation.server.defense.generator.initial_seed() == keyed_seed(key, 7, "defense")
    replicas = simulation.replicas  # the first correct server is the run's own
    assert replicas.servers[0] is simulation.server and len(replicas.servers) == 2
    for index, (server, channel) in enumerate(zip(replicas.servers, replicas.channels)):
        if index == 0:
            continue
        assert server.defense.generator.initial_seed() == keyed_seed(key, 7, "servers",
                                                                     2 * index)
        assert channel.generator.initial_seed() == keyed_seed(key, 7, "servers", 2 * index + 1)
    assert simulation.adversary.attack.generator.initial_seed() == stream_seed(7, "attack")
    assert keyed_seed(key, 7, "shuffle") != keyed_seed(b"another key", 7, "shuffle")


def test_checkpoints_are_taken_every_checkpoint_every_steps_but_never_at_the_last():
    config = make_config(task="digits", defense="median", attack="little", steps=10,
                         eval_every=5, checkpoint_every=5)
    taken = []
    engine.run(config, lambda row: None, lambda row: None,
               on_checkpoint=lambda simulation: taken.append(simulation.step_index))
    assert taken == [5]  # the run publishes its results at step 10 instead


@pytest.mark.parametrize("other, message", [
    ({"n": 9}, r"^checkpoint worker_momentum has shape \(9, 4810\), this run \(7, 4810\)$"),
    ({"servers": 4}, r"^checkpoint has 2 correct servers, this run 3$"),
])
def test_a_checkpoint_of_another_run_is_refused_with_what_differs(other, message):
    common = dict(task="digits", defense="median", attack="little", momentum_at="worker",
                  steps=2, servers=3, byzantine_servers=1, server_attack="model-little")
    saved = engine.Simulation(make_config(**common))
    saved.step()
    other_run = engine.Simulation(make_config(**{**common, **other}))
    with pytest.raises(ValueError, match=message):
        other_run.load_state_dict(saved.state_dict())
