"""Issue #20: mimic keeps its chosen worker for the run (`keep_after`, a per-run state)."""
import pytest
import torch

from attacks import mimic
from benchmark.api import UsageError
from benchmark.plugins import BoundAttack, BoundDefense


def average(gradients):
    return gradients.mean(dim=0)


def test_mimic_default_chooses_afresh_each_step():
    first = torch.tensor([[0.0, 0.0], [1.0, 0.1], [-3.0, 0.0], [0.5, -0.1]])
    second = torch.tensor([[0.0, 0.0], [4.0, 0.1], [-1.0, 0.0], [0.5, -0.1]])
    state = {}
    assert torch.equal(mimic.craft(first, 1, average, state=state), first[2:3])
    assert torch.equal(mimic.craft(second, 1, average, state=state), second[1:2])
    assert state == {}  # keep_after=0 keeps nothing: the committed runs' behaviour


def test_mimic_keeps_the_worker_chosen_at_the_last_warm_up_step():
    first = torch.tensor([[0.0, 0.0], [1.0, 0.1], [-3.0, 0.0], [0.5, -0.1]])
    second = torch.tensor([[0.0, 0.0], [4.0, 0.1], [-1.0, 0.0], [0.5, -0.1]])
    state = {}
    assert torch.equal(mimic.craft(first, 2, average, keep_after=1, state=state),
                       first[2:3].expand(2, -1))
    # worker 2 is kept although worker 1 is now the most heterogeneous
    assert torch.equal(mimic.craft(second, 2, average, keep_after=1, state=state),
                       second[2:3].expand(2, -1))
    state = {}
    mimic.craft(first, 1, average, keep_after=2, state=state)
    assert torch.equal(mimic.craft(second, 1, average, keep_after=2, state=state), second[1:2])
    assert torch.equal(mimic.craft(first, 1, average, keep_after=2, state=state), first[1:2])


def test_mimic_state_lives_in_the_harness(generator):
    attack = BoundAttack("mimic:keep_after=1", 2, generator)
    assert attack.spec.stateful and attack.states == {}
    defense = BoundDefense("average", 2, torch.Generator().manual_seed(0))
    first = torch.tensor([[0.0, 0.0], [1.0, 0.1], [-3.0, 0.0], [0.5, -0.1]])
    attack(first, defense)
    assert attack.states["worker"] == 2
    with pytest.raises(UsageError, match="keep_after"):
        BoundAttack("mimic:keep_after=-1", 2, generator).check(11)


def test_mimic_keeps_its_worker_across_a_checkpoint():
    from benchmark import engine
    from benchmark.config import make_config
    config = make_config(task="digits", defense="median", attack="mimic:keep_after=2",
                         steps=4, eval_every=4, batch_size=8, n=9, f=2)
    whole = engine.Simulation(config)
    for _ in range(4):
        whole.step()
    first = engine.Simulation(config)
    for _ in range(3):
        first.step()
    resumed = engine.Simulation(config)
    resumed.load_state_dict(first.state_dict())
    resumed.step()
    assert resumed.adversary.attack.states == whole.adversary.attack.states
    assert torch.equal(resumed.theta, whole.theta)
