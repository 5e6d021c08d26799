"""FLTrust (defenses/fltrust.py) and the server's root data behind it
(benchmark.stages.root): the kernel's edge cases, the server gradient computed as an
honest worker's submission, handed only to the rules that declare it, a root set the
workers never sample, determinism, checkpoints, and the settings' checks."""
import math

import pytest
import torch

from benchmark import engine, registry
from benchmark.api import Aggregated, UsageError
from benchmark.cells import run_cell
from benchmark.config import make_config
from benchmark.plugins import BoundDefense
from tests.plugin_fixtures import write_plugin

FLTRUST = registry.lookup("defense", "fltrust").spec
SERVER = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)  # ‖g0‖ = 5


def fltrust(x, server=SERVER):
    result = FLTRUST.aggregate(x, 1, server_gradient=server.to(x.dtype))
    assert isinstance(result, Aggregated)
    return result


# --- the kernel ----------------------------------------------------------------------

def test_rows_are_rescaled_to_the_server_norm_and_weighted_by_trust():
    x = torch.tensor([[6.0, 8.0, 0.0],     # along g0, norm 10: trust 1, rescaled to g0
                      [0.0, 1.0, 0.0]],    # cos = 0.8, rescaled to (0, 5, 0)
                     dtype=torch.float64)
    expected = (1.0 * SERVER + 0.8 * torch.tensor([0.0, 5.0, 0.0])) / 1.8
    result = fltrust(x)
    torch.testing.assert_close(result.vector, expected)
    assert result.selected.tolist() == [0, 1]


def test_tied_rows_share_the_weight_equally():
    x = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    # trust 0.6, 0.6, 0.8; rescaled rows (5, 0, 0), (5, 0, 0), (0, 5, 0)
    expected = torch.tensor([0.6 * 5 * 2, 0.8 * 5, 0.0], dtype=torch.float64) / 2.0
    torch.testing.assert_close(fltrust(x).vector, expected)


def test_a_row_opposite_to_the_server_gets_weight_zero():
    honest = torch.tensor([[3.0, 4.5, 0.1], [2.5, 4.0, -0.2], [3.2, 3.9, 0.0]],
                          dtype=torch.float64)
    byzantine = -100 * SERVER[None]
    with_it = fltrust(torch.cat([honest, byzantine]))
    assert torch.equal(with_it.vector, fltrust(honest).vector)
    assert 3 not in with_it.selected.tolist()


def test_every_cosine_negative_or_zero_gives_the_zero_vector():
    x = torch.tensor([[-3.0, -4.0, 1.0], [4.0, -3.0, 0.0], [0.0, 0.0, 0.0]],
                     dtype=torch.float64)  # opposite, orthogonal, zero
    result = fltrust(x)
    assert torch.equal(result.vector, torch.zeros(3, dtype=torch.float64))
    assert len(result.selected) == 0


@pytest.mark.parametrize("server", [torch.zeros(3), torch.tensor([math.nan, 1.0, 0.0]),
                                    torch.tensor([math.inf, 0.0, 0.0])])
def test_a_zero_or_non_finite_server_gradient_trusts_nobody(server):
    x = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    result = fltrust(x, server.to(torch.float64))
    assert torch.equal(result.vector, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_get_trust_zero(bad):
    honest = torch.tensor([[3.0, 4.5, 0.1], [2.5, 4.0, -0.2]], dtype=torch.float64)
    poisoned = torch.cat([honest, torch.full((1, 3), bad, dtype=torch.float64),
                          torch.tensor([[1.0, bad, 0.0]], dtype=torch.float64)])
    result = fltrust(poisoned)
    assert torch.equal(result.vector, fltrust(honest).vector)
    assert result.selected.tolist() == [0, 1]


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e6), (torch.float32, 1e30),
                                          (torch.float64, 1e200)])
def test_a_huge_row_is_brought_to_the_server_norm(dtype, scale):
    """1e30 overflows ‖g‖ in float32 and 1e200 the squares in float64: the rule measures
    the first again in float64 and still rescales it; the second has no finite norm at
    all, so it gets trust 0 like a non-finite row."""
    direction = torch.tensor([0.6, 0.8, 0.0], dtype=dtype)
    result = fltrust((direction * scale)[None])
    if scale == 1e200:
        assert torch.equal(result.vector, torch.zeros(3, dtype=dtype))
        return
    assert result.vector.dtype == dtype
    torch.testing.assert_close(result.vector, SERVER.to(dtype))


def test_row_order_does_not_change_the_aggregate():
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    server = torch.randn(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    permutation = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(fltrust(x[permutation], server).vector,
                               fltrust(x, server).vector, rtol=1e-12, atol=1e-12)


def test_the_bound_rule_refuses_to_run_without_a_server_gradient_and_probes_with_it():
    defense = BoundDefense("fltrust", 2, torch.Generator())
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="no server gradient"):
        defense.aggregate(x)
    defense.server_gradient = SERVER.float()
    assert torch.equal(defense.probe(x), defense(x)[0])


def test_requirement_is_one_row_and_no_assumption_on_f():
    assert FLTRUST.reason(1, 0) is None and FLTRUST.reason(1, 5) is None
    assert FLTRUST.reason(0, 0)
    assert "no assumption on f" in FLTRUST.requirement


# --- the server's root data in the engine -----------------------------------------------

def settings(**extra):
    return {**dict(task="template", n=7, f=2, attack="little", steps=6, eval_every=3,
                   seed=5), **extra}


def honest_root_gradient(config, theta, batch):
    """An independent computation of the server's gradient at θ on `batch`: the task's
    loss through the module, plus l2·θ, clipped."""
    task = registry.lookup("task", config.task).spec
    data = engine.load_task_data(config.task, None)
    model = task.model()
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    loss = task.loss(model(data.train_inputs[batch]), data.train_targets[batch])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    gradient = torch.cat([g.reshape(-1) for g in grads]) + config.l2 * theta
    return gradient * min(1.0, config.clip / float(gradient.norm()))


def root_batches(config, count):
    """The root set and the first `count` root batches, drawn as documented: from the
    "root" stream, the root set (sorted), then epoch permutations of it."""
    generator = torch.Generator().manual_seed(engine.stream_seed(config.seed, "root"))
    size = len(engine.load_task_data(config.task, None).train_targets)
    root = torch.randperm(size, generator=generator)[:config.root_size].sort().values
    order = torch.randperm(config.root_size, generator=generator)
    b = config.batch_size
    return root, [root[order[i * b:(i + 1) * b]] for i in range(count)]


@pytest.mark.parametrize("placement", ["worker", "server", "update"])
def test_the_server_gradient_is_an_honest_submission_on_root_data(placement):
    config = make_config(**settings(defense="fltrust", momentum_at=placement))
    sim = engine.Simulation(config)
    thetas, given, aggregates = [sim.theta.clone()], [], []
    for _ in range(2):
        sim.step()
        given.append(sim.defense.server_gradient.clone())
        thetas.append(sim.theta.clone())
        aggregates.append(sim.previous_aggregate.clone())
    _, batches = root_batches(config, 2)
    first, second = (honest_root_gradient(config, thetas[i], batches[i]) for i in range(2))
    mu = config.momentum
    expected = {"worker": [first, mu * first + second],
                "server": [first, second + mu * aggregates[0]],
                "update": [first, second]}[placement]
    for actual, wanted in zip(given, expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-6)


def test_the_workers_never_sample_the_root_set():
    config = make_config(**settings(defense="fltrust"))
    sim = engine.Simulation(config)
    root, _ = root_batches(config, 0)
    assert torch.equal(sim.root.indices, root)
    size = len(sim.data.train_targets)
    epoch = sim.sampler.next_batches((size - config.root_size) // config.batch_size)
    assert not set(epoch.flatten().tolist()) & set(root.tolist())
    assert set(epoch.flatten().tolist()) | set(root.tolist()) == set(range(size))


def test_other_rules_get_no_root_set_and_sample_as_before():
    config = make_config(**settings(defense="median"))
    sim = engine.Simulation(config)
    assert sim.root is None and "root" not in sim.state_dict()
    generator = torch.Generator().manual_seed(engine.stream_seed(config.seed, "data"))
    order = torch.randperm(len(sim.data.train_targets), generator=generator)
    assert torch.equal(sim.sampler.next_batches(2).flatten(), order[:2 * config.batch_size])


def test_the_root_stream_is_appended_so_no_other_seed_moves():
    assert engine.STREAMS[:9] == ("model", "data", "shuffle", "defense", "attack", "servers",
                                  "server_attack", "model_rules", "participation")
    assert engine.STREAMS[9] == "root"
    assert engine.stream_seed(1, "data") == 1_000_003 + 7919 + 17


SPY = """
    import torch
    from benchmark.api import Defense

    SEEN = []

    def aggregate(gradients, f, **extra):
        SEEN.append(sorted(extra))
        if "server_gradient" in extra:
            assert extra["server_gradient"].shape == gradients[0].shape
        return gradients.mean(dim=0)

    defense = Defense(name="spy", aggregate=aggregate)
    trusting = Defense(name="trusting-spy", aggregate=aggregate, server_gradient=True)
"""


def test_only_a_rule_that_declares_it_receives_the_server_gradient(plugin_dir):
    write_plugin(plugin_dir, "defenses", "spy", SPY)
    write_plugin(plugin_dir, "defenses", "trusting_spy",
                 SPY.replace("defense = Defense", "plain = Defense")
                    .replace("trusting = Defense", "defense = Defense"))
    for name, expected in (("spy", []), ("trusting-spy", ["server_gradient"])):
        config = make_config(**settings(defense=name, steps=2))
        sim = engine.Simulation(config)
        sim.step()
        module = registry.lookup("defense", name).spec.aggregate.__globals__
        assert module["SEEN"][-1] == expected, name
        assert (sim.root is not None) == bool(expected)
    # in a composition only the declaring component gets it (nnm takes no such argument)
    config = make_config(**settings(defense="nnm+fltrust", steps=2))
    assert engine.run(config, lambda row: None, lambda row: None).status == "ok"


def test_a_rule_that_writes_to_the_server_gradient_fails_its_cell(plugin_dir):
    write_plugin(plugin_dir, "defenses", "scribbler", """
        from benchmark.api import Defense

        def aggregate(gradients, f, *, server_gradient):
            server_gradient.mul_(0)
            return gradients.mean(dim=0)

        defense = Defense(name="scribbler", aggregate=aggregate, server_gradient=True)
    """)
    config = make_config(**settings(defense="scribbler", steps=2))
    outcome = engine.run(config, lambda row: None, lambda row: None)
    assert outcome.status == "failed" and "modified the server gradient" in outcome.reason


def test_runs_are_deterministic_per_seed(tmp_path):
    config = make_config(**settings(defense="fltrust", momentum_at="worker"))
    first, again = run_cell(config, tmp_path / "a"), run_cell(config, tmp_path / "b")
    other = run_cell(make_config(**settings(defense="fltrust", momentum_at="worker", seed=6)),
                     tmp_path / "c")
    for name in ("metrics.csv", "eval.csv"):
        assert (first.folder / name).read_bytes() == (again.folder / name).read_bytes()
        assert (first.folder / name).read_bytes() != (other.folder / name).read_bytes()
    assert first.status == "ok"


def test_state_dict_round_trip_keeps_the_server_momentum():
    config = make_config(**settings(defense="fltrust", momentum_at="worker", steps=9))
    first = engine.Simulation(config)
    for _ in range(4):
        first.step()
    saved = first.state_dict()
    assert torch.count_nonzero(saved["root"]["worker_momentum"]) > 0
    expected = [first.step() for _ in range(4)]
    second = engine.Simulation(config)
    second.load_state_dict(saved)
    assert [second.step() for _ in range(4)] == expected
    assert torch.equal(second.defense.server_gradient, first.defense.server_gradient)


# --- settings -----------------------------------------------------------------------------

def test_root_size_stays_out_of_the_hash_at_its_default():
    base = make_config(**settings(defense="fltrust"))
    assert base.root_size == 100
    assert base.hash() == make_config(**settings(defense="fltrust", root_size=100)).hash()
    assert base.hash() != make_config(**settings(defense="fltrust", root_size=50)).hash()


def test_bad_root_sizes_and_replicated_servers_are_refused():
    with pytest.raises(UsageError, match="root_size must be at least 1"):
        make_config(**settings(defense="fltrust", root_size=0))
    with pytest.raises(UsageError, match="leave the workers no training data"):
        engine.Simulation(make_config(**settings(defense="fltrust", root_size=500)))
    with pytest.raises(UsageError, match="replicated servers do not hold"):
        make_config(**settings(defense="fltrust", servers=3))
    with pytest.raises(UsageError, match="needs server data"):
        make_config(**settings(defense="median", servers=3, gather_rule="fltrust"))


def test_the_cli_exits_2_on_a_bad_root_size(capsys, tmp_path):
    from benchmark.cli import main
    assert main(["cell", "--task", "template", "--defense", "fltrust", "--steps", "1",
                 "--set", "root_size=0", "--out", str(tmp_path)]) == 2
    assert "root_size" in capsys.readouterr().err
