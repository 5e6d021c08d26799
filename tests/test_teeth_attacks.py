"""Each attack against its definition written out plainly, on inputs where a wrong branch,
bound or default gives another answer (issue 22: survivors of mutation testing)."""
import math

import pytest
import torch

from attacks import _agnostic, anticge, bulyan, chain, fang_krum, fang_trmean, gaussian, signmimic
from attacks import sparse
from benchmark import registry
from tests.teeth_helpers import average, rows

MARGIN = 1 - 1e-6


class Probe:
    """The harness's defense probe as an attack sees it: a rule and the declared f."""

    def __init__(self, f):
        self.f = f

    def __call__(self, gradients):
        return gradients.mean(dim=0)


# anticge: the negated sum of the rows CGE would keep, scaled just below the norm of the
# first honest row it would drop

HONEST = rows([3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [4.0, 0.0])  # norms 3, 1, 2, 4


def test_anticge_without_a_declared_f_keeps_h_minus_f_rows():
    # f = 2: CGE keeps the rows of norms 1 and 2; the next one has norm 3
    expected = rows([0.0, -3.0]) * (3.0 * MARGIN / 3.0)
    assert torch.equal(anticge.craft(HONEST, 2, average), expected.expand(2, -1))


def test_anticge_takes_the_declared_f_from_the_probe():
    # declared 1 (f = 2 sent): keeps norms 1, 2, 3; the bound is 4
    direction = rows([-3.0, -3.0])
    expected = direction * (4.0 * MARGIN / float(direction.norm()))
    assert torch.equal(anticge.craft(HONEST, 2, Probe(1)), expected.expand(2, -1))
    # declared 0: CGE keeps every row but the largest, which is the bound
    assert torch.equal(anticge.craft(HONEST, 1, Probe(0)), expected.expand(1, -1))


def test_anticge_declaring_every_row_byzantine_uses_the_honest_mean():
    direction = -HONEST.mean(dim=0)  # -(1.75, 0.75); the bound: the smallest norm, 1
    expected = direction * (1.0 * MARGIN / float(direction.norm()))
    for declared in (4, 9):
        assert torch.equal(anticge.craft(HONEST, 3, Probe(declared)), expected.expand(3, -1))


def test_anticge_scales_a_short_direction_up():
    honest = rows([0.5, 0.0], [0.0, 3.0])  # keeps the first row: length 0.5, bound 3
    expected = rows([-0.5, 0.0]) * (3.0 * MARGIN / 0.5)
    assert torch.equal(anticge.craft(honest, 1, Probe(1)), expected)


def test_anticge_sends_zeros_when_nothing_can_be_scaled():
    no_direction = rows([1.0, 0.0], [-1.0, 0.0], [5.0, 0.0])  # the kept rows cancel out
    assert torch.equal(anticge.craft(no_direction, 2, Probe(1)), torch.zeros(2, 2))
    no_bound = rows([0.0, 1.0], [math.inf, 0.0])  # the first dropped row has no norm
    assert torch.equal(anticge.craft(no_bound, 3, Probe(1)), torch.zeros(3, 2))


def test_anticge_breaks_norm_ties_by_row_order():
    # 40 rows of norm 1 along the coordinates 0..9 in turn, row i with sign (-1)^(i // 10);
    # declared 30: CGE keeps rows 0..9 (the first in order), whose sum is -(1, ..., 1)
    honest = torch.zeros(40, 10)
    for i in range(40):
        honest[i, i % 10] = (-1.0) ** (i // 10)
    direction = -honest[:10].sum(dim=0)
    expected = direction * (1.0 * MARGIN / float(direction.norm()))
    assert torch.equal(anticge.craft(honest, 1, Probe(30)), expected.expand(1, -1))


# gaussian: sigma times a standard normal draw from the attack's own generator, in the
# gradients' dtype

def test_gaussian_draws_sigma_times_a_standard_normal_in_the_gradients_dtype():
    honest = torch.zeros(3, 5, dtype=torch.float64)
    sent = gaussian.craft(honest, 4, average, generator=torch.Generator().manual_seed(7))
    expected = torch.randn(4, 5, generator=torch.Generator().manual_seed(7),
                           dtype=torch.float64) * 200.0
    assert sent.dtype == torch.float64 and torch.equal(sent, expected)


def test_gaussian_refuses_a_zero_sigma():
    assert gaussian.check(10, 3, 0.0).startswith("sigma must be a positive finite")
    assert gaussian.check(10, 3, 1e-9) is None


# the defaults are part of each attack's definition: every stored cell that does not name an
# option was run with them

DEFAULTS = {
    "anticge": {}, "bulyan": {"coordinate": "-1", "factor": 1.0, "search": 16},
    "chain": {"scale": 1.0}, "empire": {"factor": 1.1, "search": 0},
    "fang-krum": {"threshold": 1e-05}, "fang-trmean": {"b": 2.0}, "gaussian": {"sigma": 200.0},
    "inf": {"negative": False}, "labelflip": {},
    "little": {"factor": 1.5, "negative": True, "search": 0}, "mimic": {"keep_after": 0},
    "minmax": {"perturbation": "std", "gamma_init": 10.0, "tolerance": 1e-05},
    "minsum": {"perturbation": "std", "gamma_init": 10.0, "tolerance": 1e-05},
    "nan": {}, "none": {}, "rop": {"angle": 90.0, "scale": 1.0, "reference": "previous"},
    "signflip": {"scale": 1.0}, "signmimic": {"scale": 1.0},
    "sparse": {"fraction": 0.01, "factor": 1.5, "mode": "std"},
}


def test_every_attacks_default_options():
    found = {name: registry.lookup("attack", name).spec.options
             for name in registry.names("attack")}
    assert found == DEFAULTS


def test_the_checks_accept_their_boundary_values():
    assert sparse.check(10, 3, 1.0, 0.0, "std") is None  # every coordinate, no push
    assert sparse.check(10, 3, 0.5, 0.5, "flip") is None
    assert bulyan.check(10, 3, "0", 0.0, 0) is None
    assert bulyan.check(10, 3, "0", 0.5, 2) is None
    assert _agnostic.check("unit", 0.5, 1e-3) is None


# sparse: the honest mean with its k largest-magnitude coordinates attacked

def test_sparse_breaks_magnitude_ties_by_the_lower_coordinate():
    honest = torch.zeros(3, 40)
    honest[:, ::2], honest[:, 1::2] = 1.0, -1.0  # |mean| = 1 everywhere
    sent = sparse.craft(honest, 1, average, fraction=0.25, mode="zero")  # k = 10
    expected = honest[0].clone()
    expected[:10] = 0.0
    assert torch.equal(sent, expected.expand(1, -1))


def test_sparse_leaves_a_zero_mean_coordinate_at_zero():
    honest = rows([4.0, 1.0, -2.0], [0.0, -1.0, 0.0])  # mean 2, 0, -1
    sent = sparse.craft(honest, 2, average, fraction=1.0, factor=1.0)
    # σ = 2√2, √2, √2: 2 − 2√2 and −1 + √2 move against the sign; the zero stays
    deviation = torch.tensor([8.0, 2.0, 2.0]).sqrt()
    expected = rows([2.0 - float(deviation[0]), 0.0, -1.0 + float(deviation[2])])
    assert torch.equal(sent, expected.expand(2, -1))


# signmimic: the honest mean's sign counts at random places, uniform magnitudes, at scale ×
# the median honest norm; every draw from the attack's generator, in float64

def signmimic_definition(honest, f, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    mean = honest.to(torch.float64).mean(dim=0)
    d = len(mean)
    positive, negative = int((mean > 0).sum()), int((mean < 0).sum())
    magnitudes = torch.rand(d, generator=generator, dtype=torch.float64)
    signs = torch.tensor([1.0] * positive + [-1.0] * negative + [0.0] * (d - positive - negative),
                         dtype=torch.float64)
    vector = (signs * magnitudes)[torch.randperm(d, generator=generator)]
    size = float(honest.to(torch.float64).norm(dim=1).median()) * scale
    vector = vector * (size / vector.norm())
    return vector.to(honest.dtype).expand(f, -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_signmimic_by_its_definition(dtype):
    honest = rows([0.25, -3.0, 0.0, 0.5, 2.0], [0.5, -1.0, 0.0, -0.25, 4.0],
                  [0.75, 1.0, 0.0, 0.5, -1.0], dtype=dtype)  # mean signs + − 0 + +
    sent = signmimic.craft(honest, 3, average, scale=2.0,
                           generator=torch.Generator().manual_seed(11))
    assert sent.dtype == dtype
    assert torch.equal(sent, signmimic_definition(honest, 3, 2.0, 11))
    assert [int((sent[0] > 0).sum()), int((sent[0] < 0).sum())] == [3, 1]


def test_signmimic_measures_the_honest_norms_in_float64():
    # float32 rows of 1,000 coordinates: their norms summed in float32 are off in the last
    # bits, enough to move the rescaled vector's float32 rounding
    honest = torch.randn(5, 1000, generator=torch.Generator().manual_seed(4)) * 1e-3
    sent = signmimic.craft(honest, 2, average, generator=torch.Generator().manual_seed(9))
    assert torch.equal(sent, signmimic_definition(honest, 2, 1.0, 9))


def test_signmimic_rescales_a_short_draw_and_sends_zeros_for_a_zero_mean():
    one_sign = rows([2.0, 0.0], [4.0, 0.0], dtype=torch.float64)  # one magnitude in (0, 1)
    sent = signmimic.craft(one_sign, 1, average, generator=torch.Generator().manual_seed(2))
    assert float(sent[0].norm()) == pytest.approx(2.0, rel=1e-12)  # the (lower) median norm
    zero_mean = rows([1.0, -2.0], [-1.0, 2.0])
    sent = signmimic.craft(zero_mean, 2, average, generator=torch.Generator().manual_seed(2))
    assert torch.equal(sent, torch.zeros(2, 2))


def test_signmimic_and_chain_refuse_a_zero_scale():
    for module in (signmimic, chain):
        assert module.check(10, 3, 0.0).startswith("scale must be a positive number")
        assert module.check(10, 3, 1e-9) is None


def test_signmimic_counts_the_signs_of_the_exact_mean():
    tiny = 2.0 ** -149  # the smallest float32: the mean of it and 0 is 0 in float32
    honest = rows([tiny, 1.0], [0.0, 1.0])
    sent = signmimic.craft(honest, 1, average, generator=torch.Generator().manual_seed(3))
    assert int((sent[0] > 0).sum()) == 2


# fang-krum: λ from Fang et al.'s bound, halved until the defense picks −λ·sign(mean)

def test_fang_krum_bound_by_hand():
    # h = 3 rows of d = 4: one neighbour each (h − 2); distances 2, 2 and 4 (1 to 2, 1 to 3,
    # 2 to 3): the smallest sum of one neighbour's distance is 2; h − f − 1 = 1 at f = 1;
    # the largest norm is 4 (row 3): λ₀ = 2 / (1·2) + 4 / 2 = 3
    honest = rows([0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 2.0, 2.0 * 2 ** 0.5])
    assert fang_krum.upper_bound(honest, 1) == pytest.approx(2 / 2 + 4 / 2, rel=1e-6)
    # h = 2: no neighbours, only the largest norm: 2 / 2
    assert fang_krum.upper_bound(honest[:2], 0) == pytest.approx(1.0, rel=1e-6)


def test_fang_krum_stops_halving_below_the_threshold():
    honest = rows([1.0, -2.0, 1.0], [3.0, -4.0, -1.0], [2.0, -1.0, 0.0])  # mean signs + − 0
    bound = fang_krum.upper_bound(honest, 1)
    probes = []

    def never_picks(gradients):
        probes.append(len(gradients))
        return gradients[:3].mean(dim=0)

    sent = fang_krum.craft(honest, 1, never_picks, threshold=bound)
    # λ₀ = threshold is tried, refused, halved below it: λ₀ / 2 sent, zero where the mean is 0
    assert probes == [4]
    assert torch.equal(sent, (bound / 2 * rows([-1.0, 1.0, 0.0])).expand(1, -1))


def test_fang_krum_sends_the_bound_when_the_first_probe_is_picked():
    honest = rows([1.0, -2.0, 1.0], [3.0, -4.0, -1.0], [2.0, -1.0, 0.0])  # mean signs + − 0
    sent = fang_krum.craft(honest, 1, lambda gradients: gradients[-1])
    expected = fang_krum.upper_bound(honest, 1) * rows([-1.0, 1.0, 0.0])
    assert torch.equal(sent, expected.expand(1, -1))


def test_fang_krum_needs_the_aggregate_strictly_nearer_the_byzantine_vector():
    # a zero honest mean: the Byzantine vector is the mean itself, never strictly nearer
    honest = rows([1.0, -1.0], [-1.0, 1.0], [0.0, 0.0])
    probes = []

    def count(gradients):
        probes.append(1)
        return gradients[-1]

    fang_krum.craft(honest, 1, count, threshold=1e-3)
    assert len(probes) > 1


# fang-trmean: per coordinate, uniform draws beyond the honest extreme opposite the mean's
# sign, within a factor b, in the gradients' dtype

def test_fang_trmean_by_its_definition():
    honest = rows([0.5, -0.5, 1.0, -3.0], [0.25, -2.0, -1.0, 5.0], dtype=torch.float64)
    # means 0.375 (low 0.25 > 0), −1.25 (high −0.5 < 0), 0, 1 (low −3 < 0)
    sent = fang_trmean.craft(honest, 2, average, b=3.0,
                             generator=torch.Generator().manual_seed(5))
    u = torch.rand(2, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected = torch.stack([0.25 / 3 + u[:, 0] * (0.25 - 0.25 / 3),   # in [low / b, low]
                            -0.5 + u[:, 1] * (-0.5 / 3 + 0.5),       # in [high, high / b]
                            torch.zeros(2, dtype=torch.float64),      # the mean
                            -9.0 + u[:, 3] * (-3.0 + 9.0)], dim=1)   # in [b·low, low]
    assert sent.dtype == torch.float64
    torch.testing.assert_close(sent, expected, rtol=0, atol=1e-15)


def test_fang_trmean_small_positive_extremes():
    # a negative mean whose largest value is in (0, 1): draws in [high, b·high]
    honest = rows([0.5, 0.0], [-3.0, 0.0])
    sent = fang_trmean.craft(honest, 1, average, generator=torch.Generator().manual_seed(1))
    u = torch.rand(1, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sent[:, 0], 0.5 + u[:, 0] * (1.0 - 0.5))
    assert torch.equal(sent[:, 1], torch.zeros(1))
