"""The defense-aware line search, the min-max/min-sum γ search, and BoundAttack's contract."""
from pathlib import Path

import pytest
import torch

from attacks import _agnostic, little
from attacks._search import along, line_maximize
from benchmark import registry
from benchmark.api import Attack, coordinate_median
from benchmark.plugins import BoundAttack, BoundDefense, DefenseProbe, PluginFailure


class Counted:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)


def bumpy(seed):
    """A random multimodal objective on x >= 0."""
    g = torch.Generator().manual_seed(seed)
    centres, widths, heights = (torch.rand(5, generator=g) * 40, torch.rand(5, generator=g) * 3,
                                torch.randn(5, generator=g))
    return lambda x: float((heights * torch.exp(-((x - centres) / widths) ** 2)).sum())


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("budget", [1, 2, 5, 16])
def test_line_search_is_never_worse_than_zero_and_respects_its_budget(seed, budget):
    objective = Counted(bumpy(seed))
    x, value, used = line_maximize(objective, budget)
    assert objective.calls == used <= budget
    assert x >= 0 and value == objective.function(x) >= objective.function(0.0)


def test_line_search_approaches_a_concave_maximum():
    x, value, used = line_maximize(lambda x: -(x - 5) ** 2, 16)
    assert used == 16 and abs(x - 5) < 0.5


def test_line_search_keeps_zero_when_moving_only_hurts():
    assert line_maximize(lambda x: -x, 16)[:2] == (0.0, 0.0)


def test_line_search_treats_nan_as_worst():
    x, value, _ = line_maximize(lambda x: float("nan") if x > 2 else x, 16)
    assert 0 < x <= 2 and value == x


def test_line_search_against_a_real_rule_beats_x_zero_within_budget():
    honest = torch.randn(7, 50, generator=torch.Generator().manual_seed(3))
    f = 4
    median = Counted(coordinate_median)
    byzantine = little.craft(honest, f, median, search=9)
    assert median.calls == 9
    mean = honest.mean(dim=0)

    def objective(rows):
        return float((coordinate_median(torch.cat([honest, rows])) - mean).square().sum())
    assert objective(byzantine) >= objective(mean.expand(f, -1))


def test_along_with_search_moves_forward_along_the_direction_only():
    honest = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    direction = torch.randn(8, generator=torch.Generator().manual_seed(2))
    result = along(honest, 2, coordinate_median, direction, 0.0, 6)
    offset = result[0] - honest.mean(dim=0)
    x = float(offset @ direction / direction.square().sum())
    assert x >= 0 and torch.allclose(offset, x * direction, atol=1e-6)
    assert torch.equal(result[0], result[1])


def reference_distances(honest, vector):
    x = honest.double()
    to_vector = (x - vector.double()).square().sum(dim=1)
    pairwise = torch.cdist(x, x).square()
    return to_vector, pairwise


@pytest.mark.parametrize("kind", _agnostic.PERTURBATIONS)
@pytest.mark.parametrize("rule", ["max", "sum"])
@pytest.mark.parametrize("seed", range(3))
def test_min_max_and_min_sum_constraints_bind_at_the_found_gamma(kind, rule, seed):
    g = torch.Generator().manual_seed(seed)
    honest = torch.randn(9, 30, generator=g, dtype=torch.float64) + torch.randn(30, generator=g,
                                                                              dtype=torch.float64)
    tolerance = 1e-6
    direction = _agnostic.perturbation(honest, kind)
    gamma = _agnostic.largest_feasible(_agnostic.constraint(honest, direction, rule), 10.0,
                                       tolerance)
    mean = honest.mean(dim=0)

    def slack(gamma):  # threshold − constrained quantity, computed independently
        to_vector, pairwise = reference_distances(honest, mean + gamma * direction)
        if rule == "max":
            return float(pairwise.max() - to_vector.max())
        return float(pairwise.sum(dim=1).max() - to_vector.sum())
    assert gamma > 0
    assert slack(gamma) >= -1e-9
    assert slack(gamma + tolerance) < 0
    crafted = _agnostic.craft(honest, 3, rule, perturbation=kind, tolerance=tolerance)
    assert torch.allclose(crafted, (mean + gamma * direction).expand(3, -1))


def test_gamma_search_is_not_capped_by_its_start():
    honest = torch.tensor([[0.0], [2000.0]])  # the binding γ is ~1414, far above gamma_init
    result = _agnostic.craft(honest, 1, "max")
    assert abs(float(result[0, 0])) < 1e-2


# BoundAttack: the harness side of the attack contract

def bound_with(spec, f, generator):
    bound = BoundAttack("signflip", f, generator)
    bound.component = registry.Component(registry.Plugin(spec.name, spec, Path(__file__)), {})
    return bound


def test_an_attack_that_modifies_honest_through_torch_fails(generator):
    spec = Attack(name="vandal", attack=lambda honest, f, defense: honest.mul_(2)[:f].clone())
    honest = torch.ones(5, 3)
    with pytest.raises(PluginFailure, match="modified the honest vectors"):
        bound_with(spec, 2, generator)(honest, BoundDefense("median", 2, generator))


def test_honest_with_nans_is_not_mistaken_for_a_modification(generator):
    spec = Attack(name="reader", attack=lambda honest, f, defense: honest[:f].clone())
    honest = torch.tensor([[float("nan"), 1.0], [2.0, 3.0]])
    result = bound_with(spec, 1, generator)(honest, BoundDefense("median", 1, generator))
    assert result.shape == (1, 2)


@pytest.mark.parametrize("craft, message", [
    (lambda honest, f, defense: honest[:1].clone(), "attack returned \\(1, 3\\), expected"),
    (lambda honest, f, defense: 1 / 0, "attack raised ZeroDivisionError"),
    (lambda honest, f, defense: defense(honest[:2]), "defense raised .* while the attack probed"),
])
def test_attack_contract_violations_fail_the_cell(craft, message, generator):
    with pytest.raises(PluginFailure, match=message):
        bound_with(Attack(name="bad", attack=craft), 2, generator)(
            torch.ones(5, 3), BoundDefense("krum", 2, generator))


def test_the_probe_carries_the_declared_f_and_counts_calls(generator):
    seen = {}

    def craft(honest, f, defense):
        seen["f"], seen["probe"] = defense.f, defense
        defense(torch.cat([honest, honest[:f]]))
        return honest[:f].clone()
    bound_with(Attack(name="spy", attack=craft), 2, generator)(
        torch.randn(9, 3, generator=generator), BoundDefense("median", 3, generator))
    assert seen["f"] == 3 and isinstance(seen["probe"], DefenseProbe) and seen["probe"].calls == 1
