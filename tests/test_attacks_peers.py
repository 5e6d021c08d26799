"""The attacks of issue #20 (peers part): rop and sparse, on examples checked by hand,
their invariants on random inputs, and their option checks."""
import math

import pytest
import torch

from attacks import rop, sparse
from benchmark.api import UsageError
from benchmark.plugins import BoundAttack, BoundDefense


def average(gradients):
    return gradients.mean(dim=0)


def honest_rows(h=9, d=50, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, d, generator=g, dtype=dtype) + 0.5


def rop_craft(honest, f, defense=average, state=None, **options):
    return rop.craft(honest, f, defense, **options, state={} if state is None else state)


def test_rop_by_hand_at_the_first_step():
    honest = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])  # r = (2, 0, 0), σ = (0, 0, √2)
    assert torch.allclose(rop_craft(honest, 2), torch.tensor([[2.0, 0.0, -2.0]] * 2))
    assert torch.allclose(rop_craft(honest, 1, angle=0.0), torch.tensor([[4.0, 0, 0]]))
    assert torch.allclose(rop_craft(honest, 1, angle=180.0), torch.zeros(1, 3), atol=1e-6)
    assert torch.allclose(rop_craft(honest, 1, scale=0.5), torch.tensor([[2.0, 0, -1]]))


def test_rop_relocates_to_the_aggregate_it_expected():
    honest = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    state = {"reference": torch.tensor([0.0, 2.0, 0.0])}
    # u = (0, 1, 0); -mean = (-2, 0, 0) is orthogonal to u: w = (-1, 0, 0)
    sent = rop_craft(honest, 2, state=state)
    assert torch.allclose(sent, torch.tensor([[-2.0, 2.0, 0.0]] * 2))
    # and it keeps what the defense gives on the honest rows and its own for the next step
    assert torch.allclose(state["reference"], torch.cat([honest, sent]).mean(dim=0))
    again = rop_craft(honest, 1, state=state, reference="mean")
    assert torch.allclose(again, torch.tensor([[2.0, 0.0, -2.0]]))


def test_rop_forgets_a_non_finite_expected_aggregate():
    honest = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    state = {"reference": torch.tensor([0.0, 2.0, 0.0])}
    rop_craft(honest, 2, defense=lambda g: torch.full((3,), math.nan), state=state)
    assert "reference" not in state


def test_rop_keeps_its_state_in_the_harness(generator):
    honest = honest_rows(h=8, d=20, seed=1)
    attack = BoundAttack("rop", 3, generator)
    assert attack.spec.stateful and attack.states == {}
    defense = BoundDefense("cclip:tau=0.5", 3, torch.Generator().manual_seed(0))
    first = attack(honest, defense)
    assert "reference" in attack.states
    expected = defense.probe(torch.cat([honest, first]))
    assert torch.equal(attack.states["reference"], expected)
    second = attack(honest, defense)
    assert not torch.equal(first, second)  # relocated to the expected aggregate
    assert BoundAttack("little", 3, generator).states is None


def test_rop_resumes_from_a_checkpoint_like_a_run_in_one_go():
    from benchmark import engine
    from benchmark.config import make_config
    config = make_config(task="digits", defense="cclip:tau=0.5", attack="rop", steps=4,
                         eval_every=4, batch_size=8, n=9, f=2)
    whole = engine.Simulation(config)
    for _ in range(4):
        whole.step()
    first = engine.Simulation(config)
    for _ in range(2):
        first.step()
    saved = first.state_dict()
    assert "reference" in saved["attack_states"]
    resumed = engine.Simulation(config)
    resumed.load_state_dict(saved)
    for _ in range(2):
        resumed.step()
    assert torch.equal(resumed.theta, whole.theta)


@pytest.mark.parametrize("angle", [30.0, 90.0, 135.0])
def test_rop_perturbation_has_the_angle_and_the_length(angle):
    honest = honest_rows(dtype=torch.float64)
    r = honest.mean(dim=0)
    sent = rop_craft(honest, 3, angle=angle, scale=2.0)
    assert sent.shape == (3, 50) and torch.equal(sent[0], sent[2])
    perturbation = sent[0] - r
    assert perturbation.norm() == pytest.approx(2 * float(r.norm()))
    cosine = float(perturbation @ r / (perturbation.norm() * r.norm()))
    assert cosine == pytest.approx(math.cos(math.radians(angle)), abs=1e-9)
    # in the plane of r and the coordinate-wise deviation
    sigma = honest.std(dim=0)
    basis = torch.linalg.qr(torch.stack([r, sigma], dim=1)).Q
    assert (perturbation - basis @ (basis.T @ perturbation)).norm() < 1e-9 * r.norm()


def test_rop_of_a_zero_mean_is_zero():
    honest = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert torch.equal(rop_craft(honest, 2), torch.zeros(2, 2))


def test_sparse_by_hand():
    honest = torch.tensor([[4.0, 1.0, -3.0], [2.0, 1.0, -5.0]])  # m = (3, 1, -4), σ = (√2, 0, √2)
    s = 1.5 * math.sqrt(2)
    expected = torch.tensor([[3 - s, 1.0, -4 + s]])
    assert torch.allclose(sparse.craft(honest, 1, average, fraction=0.5), expected)
    assert torch.equal(sparse.craft(honest, 2, average, fraction=0.5, mode="flip", factor=1.0),
                       torch.tensor([[-3.0, 1.0, 4.0]] * 2))
    assert torch.equal(sparse.craft(honest, 1, average, fraction=0.5, mode="zero"),
                       torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.equal(sparse.craft(honest, 1, average, fraction=0.1, mode="zero"),
                       torch.tensor([[3.0, 1.0, 0.0]]))  # k = 1: the largest |m| only


@pytest.mark.parametrize("mode", sparse.MODES)
def test_sparse_touches_exactly_the_k_largest_coordinates(mode):
    honest = honest_rows(d=400, seed=3)
    mean = honest.mean(dim=0)
    sent = sparse.craft(honest, 2, average, fraction=0.05, mode=mode, factor=2.0)
    changed = (sent[0] != mean).nonzero().flatten()
    largest = mean.abs().topk(20).indices
    assert set(changed.tolist()) <= set(largest.tolist()) and len(changed) >= 18
    assert sent.shape == (2, 400)


@pytest.mark.parametrize("name", ["rop", "sparse"])
def test_shape_dtype_determinism_and_untouched_input(name, generator):
    honest = honest_rows(h=7, d=30, seed=5)
    before = honest.clone()
    attack = BoundAttack(name, 3, generator)
    attack.check(10)
    defense = BoundDefense("median", 3, torch.Generator().manual_seed(0))
    first = attack(honest, defense)
    again = BoundAttack(name, 3, generator)(honest, defense)  # a fresh run: same vectors
    assert first.shape == (3, 30) and first.dtype == torch.float32
    assert torch.equal(first, again) and torch.equal(honest, before)
    assert not attack.spec.randomized


def test_one_honest_vector_is_enough():
    honest = honest_rows(h=1, d=10)
    assert torch.isfinite(rop_craft(honest, 2)).all()
    assert torch.equal(sparse.craft(honest, 2, average, fraction=0.2)[0], honest[0])


@pytest.mark.parametrize("text, message", [
    ("rop:angle=inf", "angle must be a finite"), ("rop:reference=last", "reference must be"), ("rop:scale=-1", "scale must be a non-negative"),
    ("sparse:fraction=0", "fraction must be in"), ("sparse:fraction=2", "fraction must be in"),
    ("sparse:mode=random", "mode must be one of std, flip, zero"),
    ("sparse:factor=-1", "factor must be a non-negative"),
])
def test_checks_reject_bad_options(text, message, generator):
    with pytest.raises(UsageError, match=message):
        BoundAttack(text, 2, generator).check(11)
