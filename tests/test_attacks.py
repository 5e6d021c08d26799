"""Each attack on a tiny example whose answer can be checked by hand, plus option checks."""
import math

import pytest
import torch

from attacks import _agnostic, anticge, bulyan, empire, fang_krum, fang_trmean, gaussian, inf
from attacks import labelflip, little, mimic, minmax, minsum, nan, signflip
from benchmark import registry
from benchmark.api import AtLeast, UsageError
from benchmark.plugins import BoundAttack


def average(gradients):
    return gradients.mean(dim=0)


def copies(row, f):
    return torch.tensor(row).expand(f, -1)


class Probe:
    """A stand-in for the harness's defense probe: a rule and a declared f."""

    def __init__(self, rule, f):
        self.rule, self.f = rule, f

    def __call__(self, gradients):
        return self.rule(gradients)


def test_little_is_mean_minus_factor_std():
    honest = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]])  # mean 2, unbiased std 2
    assert torch.equal(little.craft(honest, 2, average), copies([-1.0, -1.0], 2))
    assert torch.equal(little.craft(honest, 1, average, negative=False), copies([5.0, 5.0], 1))
    assert torch.equal(little.craft(honest, 1, average, factor=0.5), copies([1.0, 1.0], 1))


def test_empire_scales_the_mean():
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.allclose(empire.craft(honest, 3, average), copies([-0.2, -0.3], 3))
    assert torch.allclose(empire.craft(honest, 1, average, factor=3.0), copies([-4.0, -6.0], 1))


def test_bulyan_pushes_one_coordinate_or_all():
    honest = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    one = bulyan.craft(honest, 2, average, coordinate="0", factor=3.0, search=0)
    assert torch.equal(one, copies([5.0, 3.0, 4.0], 2))
    last = bulyan.craft(honest, 1, average, coordinate="-1", factor=3.0, search=0)
    assert torch.equal(last, copies([2.0, 3.0, 7.0], 1))
    every = bulyan.craft(honest, 1, average, coordinate="all", factor=3.0, search=0)
    assert torch.equal(every, copies([5.0, 6.0, 7.0], 1))


def test_bulyan_search_against_averaging_keeps_doubling():
    # ‖average − mean‖² grows with x, so the expansion never stops: x = 1 + 2 + ... + 2^14
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    result = bulyan.craft(honest, 1, average, coordinate="0", search=16)
    assert torch.equal(result, copies([2.0 + 2 ** 15 - 1, 3.0], 1))


def test_signflip_negates_honest_vectors_in_turn():
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    expected = torch.tensor([[-1.0, -2.0], [-3.0, -4.0], [-1.0, -2.0]])
    assert torch.equal(signflip.craft(honest, 3, average), expected)
    assert torch.equal(signflip.craft(honest, 1, average, scale=2.0), torch.tensor([[-2.0, -4.0]]))


def test_gaussian_is_scaled_standard_noise_from_the_generator():
    honest = torch.zeros(3, 4)
    result = gaussian.craft(honest, 2, average, sigma=5.0, generator=torch.Generator().manual_seed(7))
    expected = torch.randn(2, 4, generator=torch.Generator().manual_seed(7)) * 5.0
    assert torch.equal(result, expected)


@pytest.mark.parametrize("module, options", [(gaussian, {"sigma": 1.0}), (fang_trmean, {})])
def test_randomized_attacks_are_deterministic_under_the_generator(module, options):
    honest = torch.tensor([[1.0, -1.0, 0.5], [3.0, -2.0, 0.25]])

    def draw(seed):
        return module.craft(honest, 3, average, **options,
                            generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
    assert module.attack.randomized


def test_nan_and_inf_fill_every_coordinate():
    honest = torch.ones(2, 3)
    assert nan.craft(honest, 2, average).isnan().all()
    assert inf.craft(honest, 2, average).eq(math.inf).all()
    assert inf.craft(honest, 1, average, negative=True).eq(-math.inf).all()


def test_mimic_copies_the_most_extreme_honest_vector():
    honest = torch.tensor([[0.0, 0.0], [1.0, 0.1], [-3.0, 0.0], [0.5, -0.1]])
    assert torch.equal(mimic.craft(honest, 2, average), copies([-3.0, 0.0], 2))


def test_labelflip_maps_y_to_c_minus_1_minus_y():
    assert labelflip.attack.flip_labels is not None and labelflip.attack.attack is None
    assert labelflip.flip(torch.tensor([0, 3, 9]), 10).tolist() == [9, 6, 0]


def test_minmax_and_minsum_on_two_points():
    # honest 0 and 2: mean 1, std √2, so m = 1 − γ√2. Both constraints bind at m = 0:
    # min-max: (1 + γ√2)² <= 4; min-sum: (1 − γ√2)² + (1 + γ√2)² <= 4.
    honest = torch.tensor([[0.0], [2.0]])
    for module in (minmax, minsum):
        result = module.craft(honest, 2, average, tolerance=1e-9)
        assert result.shape == (2, 1)
        assert abs(float(result[0, 0])) < 1e-6


def test_minmax_and_minsum_differ_on_three_points():
    # honest 0, 0, 3: mean 1, std √3, p = −√3; with t = γ√3 and m = 1 − t:
    # min-max: (m − 3)² <= 9 → t = 1, m = 0; min-sum: 2m² + (m − 3)² <= 18 → m = −1.
    honest = torch.tensor([[0.0], [0.0], [3.0]])
    assert abs(float(minmax.craft(honest, 1, average, tolerance=1e-9)[0, 0])) < 1e-6
    assert abs(float(minsum.craft(honest, 1, average, tolerance=1e-9)[0, 0]) + 1) < 1e-6


def test_fang_krum_bound_when_the_byzantine_vector_is_picked_at_once():
    # three identical honest vectors: the neighbour term is 0, max norm √2, √d = √2 → λ = 1
    honest = torch.ones(3, 2)
    keeps_the_last_row = Probe(lambda g: g[-1], 1)  # the attack appends its rows last
    assert torch.allclose(fang_krum.craft(honest, 1, keeps_the_last_row), copies([-1.0, -1.0], 1))


def test_fang_krum_halves_until_the_threshold_when_never_picked():
    honest = torch.ones(3, 2)
    result = fang_krum.craft(honest, 1, average)  # averaging stays nearer the honest mean
    assert torch.allclose(result, copies([-(2.0 ** -17)] * 2, 1))  # 2^-17 < 1e-5 <= 2^-16


def test_fang_krum_upper_bound_by_hand():
    # h = 4 honest on a line (0, 1, 3, 6), f = 1: Γ(i) = the 2 nearest; sums 1+3, 1+2, 2+3, 3+5
    honest = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert fang_krum.upper_bound(honest, 1) == pytest.approx(3 / 2 + 6)


def test_fang_trmean_values_lie_beyond_the_opposite_extreme():
    honest = torch.tensor([[1.0, -1.0, 0.0, -4.0], [3.0, -2.0, 0.0, 2.0]])
    result = fang_trmean.craft(honest, 50, average, generator=torch.Generator().manual_seed(0))
    # mean > 0 and min 1 > 0: [0.5, 1]; mean < 0, max −1 <= 0: [−1, −0.5]; mean 0: 0;
    # mean < 0 and max 2 > 0: [2, 4]
    for column, (low, high) in enumerate([(0.5, 1.0), (-1.0, -0.5), (0.0, 0.0), (2.0, 4.0)]):
        assert result[:, column].min() >= low and result[:, column].max() <= high


def test_anticge_stays_just_below_the_kept_norm():
    honest = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [4.0, 0.0]])  # norms 3, 1, 2, 4
    one = anticge.craft(honest, 2, Probe(average, 1))  # keeps norms 1, 2, 3 with the Byzantine
    expected = -torch.tensor([3.0, 3.0]) / math.sqrt(18) * 4 * (1 - anticge.MARGIN)
    assert torch.allclose(one, expected.expand(2, -1))
    assert (one.norm(dim=1) < 4).all()
    two = anticge.craft(honest, 1, Probe(average, 2))  # keeps norms 1, 2
    assert torch.allclose(two, torch.tensor([[0.0, -3.0 * (1 - anticge.MARGIN)]]))


def test_the_search_option_works_for_little_and_empire():
    honest = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    # against averaging the objective grows with x: every probe improves
    for module in (little, empire):
        searched = module.craft(honest, 1, average, search=4)  # x = 0, 1, 3, 7
        fixed = module.craft(honest, 1, average, factor=7.0)
        assert torch.allclose(searched, fixed)


INVALID = [
    ("little:factor=-1", "factor must be non-negative"),
    ("little:search=1", "search is the line search's evaluation budget"),
    ("empire:factor=inf", "factor must be a finite number"),
    ("empire:search=-3", "search is the line search's evaluation budget"),
    ("bulyan:coordinate=first", "coordinate must be an integer index"),
    ("bulyan:factor=-2", "factor must be non-negative"),
    ("signflip:scale=0", "scale must be positive"),
    ("gaussian:sigma=-1", "sigma must be a positive"),
    ("minmax:perturbation=random", "perturbation must be one of unit, std, sign"),
    ("minsum:gamma_init=0", "gamma_init must be a positive"),
    ("minmax:tolerance=0", "tolerance must be a positive"),
    ("fang-krum:threshold=0", "threshold must be positive"),
    ("fang-trmean:b=1", "b must be larger than 1"),
]


@pytest.mark.parametrize("name, message", INVALID)
def test_check_rejects_invalid_options_with_the_fix(name, message, generator):
    with pytest.raises(UsageError, match=message):
        BoundAttack(name, 2, generator).check(11)


def test_fang_krum_check_needs_enough_workers(generator):
    with pytest.raises(UsageError, match="n >= 2f\\+2"):
        BoundAttack("fang-krum", 5, generator).check(11)
    BoundAttack("fang-krum", 4, generator).check(11)


def test_defaults_pass_their_own_check():
    for name in registry.names("attack"):
        spec = registry.lookup("attack", name).spec
        assert spec.reference and spec.description, name
        if spec.check:
            assert spec.check(11, 2, **spec.options) is None, name


def test_at_least_fourteen_attacks_are_registered():
    assert len(registry.names("attack")) >= 14


def test_agnostic_perturbations():
    honest = torch.tensor([[3.0, -4.0], [3.0, -4.0]])
    assert torch.allclose(_agnostic.perturbation(honest, "unit"), torch.tensor([-0.6, 0.8]))
    assert torch.equal(_agnostic.perturbation(honest, "sign"), torch.tensor([-1.0, 1.0]))
    assert torch.equal(_agnostic.perturbation(honest, "std"), torch.zeros(2))


def test_template_sends_scaled_mean():
    from attacks import template
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(template.craft(honest, 2, average), copies([-2.0, -3.0], 2))
    assert torch.equal(template.craft(honest, 1, average, scale=2.0), copies([4.0, 6.0], 1))


def test_none_makes_every_worker_honest_while_the_defense_is_still_told_f(generator):
    from benchmark import engine
    from benchmark.config import make_config
    from benchmark.plugins import BoundDefense, check_pair
    bound = BoundAttack("none", 2, generator)
    assert bound.spec.clean and bound.f == 0 and not bound.sends_vectors
    assert bound(torch.ones(11, 3), BoundDefense("median", 2, generator)).shape == (0, 3)
    assert check_pair(BoundDefense("median", 2, generator), bound, 11) == 11
    simulation = engine.Simulation(make_config(task="digits", attack="none", n=11, f=2))
    assert simulation.honest_count == 11 and simulation.defense.f == 2
    row = simulation.step()
    assert row["sampled_norm"] > 0 and math.isnan(row["attack_norm"])


@pytest.mark.parametrize("kind", ["attack", "server_attack"])
def test_attack_requirements_hold_exactly_at_their_boundary(kind):
    """Every attack's declared `needs` is what the harness enforces: accepted at the
    smallest n it allows, refused one below with the declared text."""
    for name, plugin in registry.discover(kind).items():
        spec = plugin.spec
        for f in (1, 4):
            smallest = spec.needs.minimum(f)
            assert spec.reason(smallest, f, **spec.options) is None, (name, f)
            if smallest > 1:
                assert str(spec.needs) in spec.reason(smallest - 1, f, **spec.options), name


def test_fang_krum_needs_two_more_than_twice_f():
    assert fang_krum.attack.needs == AtLeast(2, 2)
    assert fang_krum.attack.requirement == "n >= 2f+2"
    with pytest.raises(UsageError, match=r"fang-krum needs n >= 2f\+2 = 8"):
        BoundAttack("fang-krum", 3, torch.Generator()).check(7)
    BoundAttack("fang-krum", 3, torch.Generator()).check(8)
