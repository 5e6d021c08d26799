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


def test_rop_by_hand():
    honest = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])  # r = (2, 0, 0), σ = (0, 0, √2)
    assert torch.allclose(rop.craft(honest, 2, average), torch.tensor([[2.0, 0.0, -2.0]] * 2))
    assert torch.allclose(rop.craft(honest, 1, average, angle=0.0), torch.tensor([[4.0, 0, 0]]))
    assert torch.allclose(rop.craft(honest, 1, average, angle=180.0), torch.zeros(1, 3),
                          atol=1e-6)
    assert torch.allclose(rop.craft(honest, 1, average, scale=0.5), torch.tensor([[2.0, 0, -1]]))


@pytest.mark.parametrize("angle", [30.0, 90.0, 135.0])
def test_rop_perturbation_has_the_angle_and_the_length(angle):
    honest = honest_rows(dtype=torch.float64)
    r = honest.mean(dim=0)
    sent = rop.craft(honest, 3, average, angle=angle, scale=2.0)
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
    assert torch.equal(rop.craft(honest, 2, average), torch.zeros(2, 2))


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
    first, again = attack(honest, defense), attack(honest, defense)
    assert first.shape == (3, 30) and first.dtype == torch.float32
    assert torch.equal(first, again) and torch.equal(honest, before)
    assert not attack.spec.randomized


def test_one_honest_vector_is_enough():
    honest = honest_rows(h=1, d=10)
    assert torch.isfinite(rop.craft(honest, 2, average)).all()
    assert torch.equal(sparse.craft(honest, 2, average, fraction=0.2)[0], honest[0])


@pytest.mark.parametrize("text, message", [
    ("rop:angle=inf", "angle must be a finite"), ("rop:scale=-1", "scale must be a non-negative"),
    ("sparse:fraction=0", "fraction must be in"), ("sparse:fraction=2", "fraction must be in"),
    ("sparse:mode=random", "mode must be one of std, flip, zero"),
    ("sparse:factor=-1", "factor must be a non-negative"),
])
def test_checks_reject_bad_options(text, message, generator):
    with pytest.raises(UsageError, match=message):
        BoundAttack(text, 2, generator).check(11)
