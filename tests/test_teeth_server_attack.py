"""Issue 22, tests with teeth: the boundary around a server attack plugin
(stages.adversary.BoundServerAttack), which mutation testing of the engine found unpinned:
what it is given, what it may return, and how each misbehaviour is reported."""
import pytest
import torch

from benchmark.api import UsageError
from benchmark.plugins import PluginFailure
from benchmark.stages.adversary import BoundServerAttack
from tests.plugin_fixtures import write_plugin

MODELS = torch.arange(12, dtype=torch.float32).reshape(3, 4)  # 3 correct servers, d = 4


def server_attack(plugin_dir, name, body, flags="", check="None"):
    write_plugin(plugin_dir, "server_attacks", name.replace("-", "_"), f"""
        import torch
        from benchmark.api import ServerAttack

        def craft(models, f, recipients, **extra):
            {body}

        server_attack = ServerAttack(name="{name}", attack=craft,
                                     check=lambda n, f: {check}{flags})
    """)
    return BoundServerAttack(name, 1, torch.Generator().manual_seed(4))


def test_a_randomized_attack_draws_from_the_runs_generator(plugin_dir):
    attack = server_attack(plugin_dir, "noise",
                           "return torch.randn(f, models.shape[1], generator=extra['generator'])",
                           flags=", randomized=True")
    expected = torch.randn(1, 4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(attack(MODELS, 5), expected)


def test_a_stateful_attack_keeps_its_state_and_a_checkpoint_copies_it(plugin_dir):
    attack = server_attack(plugin_dir, "counter", """
            state = extra['state']
            state.setdefault('calls', []).append(len(state['calls']))
            state.setdefault('total', torch.zeros(1)).add_(1)  # in place
            return models.mean(dim=0, keepdim=True) * state['total']""",
                           flags=", stateful=True")
    first = attack(MODELS, 5)
    saved = attack.state_dict()
    assert torch.equal(attack(MODELS, 5), 2 * first)
    assert saved["state"]["calls"] == [0]  # a deep copy, not the live list
    assert torch.equal(saved["state"]["total"], torch.ones(1))
    attack.load_state_dict(saved, torch.device("cpu"))
    assert torch.equal(attack(MODELS, 5), 2 * first)
    assert attack.state["calls"] == [0, 1] and saved["state"]["calls"] == [0]
    assert torch.equal(saved["state"]["total"], torch.ones(1))  # loading copied it too


def test_a_stateless_attack_gets_neither_state_nor_generator(plugin_dir):
    attack = server_attack(plugin_dir, "plain",
                           "assert not extra, extra\n"
                           "            return models[:1] * 2")
    assert attack.state is None
    assert torch.equal(attack(MODELS, 5), MODELS[:1] * 2)


@pytest.mark.parametrize("name, body, reason", [
    ("raiser", "raise ValueError('no models for you')",
     "server attack raised ValueError: no models for you"),
    ("scribbler", "models[0, 0] = 1e9\n            return models[:1]",
     "server attack modified the correct servers' models"),
    ("misshapen", "return torch.zeros(2, 3)",
     "server attack returned (2, 3), expected one of ((1, 4), (1, 5, 4))"),
    ("lister", "return [0.0] * 4",
     "server attack returned list, expected one of ((1, 4), (1, 5, 4))"),
])
def test_each_misbehaviour_fails_with_its_reason(plugin_dir, name, body, reason):
    attack = server_attack(plugin_dir, name, body)
    with pytest.raises(PluginFailure) as failure:
        attack(MODELS.clone(), 5)
    assert str(failure.value) == reason


@pytest.mark.parametrize("shape", [(1, 4), (1, 5, 4)])
def test_either_shape_is_taken_in_the_models_dtype(plugin_dir, shape):
    attack = server_attack(plugin_dir, "wide", f"return torch.ones({shape}, dtype=torch.float64)")
    result = attack(MODELS, 5)
    assert result.shape == shape and result.dtype == torch.float32


def test_a_silent_attack_sends_no_model(plugin_dir):
    attack = BoundServerAttack("silence", 1, torch.Generator())
    assert attack(MODELS, 5).shape == (0, 4)


def test_a_check_that_objects_refuses_with_the_servers_and_the_reason(plugin_dir):
    attack = server_attack(plugin_dir, "picky", "return models[:1]",
                           check="'needs an even number of servers' if n % 2 else None")
    attack.check(4)
    with pytest.raises(UsageError, match=r"^server attack 'picky' with servers=3, "
                                         r"byzantine_servers=1: needs an even number of "
                                         r"servers$"):
        attack.check(3)


def test_options_from_the_attack_text_reach_the_plugin(plugin_dir):
    write_plugin(plugin_dir, "server_attacks", "scaled", """
        from benchmark.api import ServerAttack

        def craft(models, f, recipients, scale=1.0):
            return models[:f] * scale

        server_attack = ServerAttack(name="scaled", attack=craft)
    """)
    attack = BoundServerAttack("scaled:scale=3", 1, torch.Generator())
    assert torch.equal(attack(MODELS, 5), MODELS[:1] * 3)
