"""The attacks' shared searches (the line search of the direction attacks, the AGR-agnostic
γ search), chain, and little on degenerate inputs, against their definitions written out
plainly (issue 22: survivors of mutation testing; the rest in test_teeth_attacks.py)."""
import math

import pytest
import torch

from attacks import _agnostic, _search, chain, little
from tests.teeth_helpers import average, rows


# the line searches

def test_line_maximize_step_by_step():
    # −(x − 5)²: 0, 1, 3 improve; 7 ties 3 and stops the expansion; contraction probes
    # 3 + 3.2 (improves), then 6.2 − 2.56 (does not); six evaluations
    calls = []

    def objective(x):
        calls.append(x)
        return -(x - 5) ** 2

    x, value, used = _search.line_maximize(objective, 6)
    assert calls == pytest.approx([0, 1, 3, 7, 6.2, 3.64])
    assert (x, value, used) == (pytest.approx(6.2), pytest.approx(-1.44), 6)


def test_line_maximize_probes_below_when_it_stays_non_negative():
    # −(x − 0.5)²: 1 ties 0 and stops the expansion; 0.8 improves; then 0.8 − 0.64 = 0.16
    # lies below the best point and above 0, so it is probed there (not at 0.8 + 0.64)
    calls = []
    _search.line_maximize(lambda x: calls.append(x) or -(x - 0.5) ** 2, 4)
    assert calls == pytest.approx([0, 1, 0.8, 0.16])


def test_line_maximize_keeps_the_first_of_equal_values():
    # min(x, 1): 3 ties 1 and stops the expansion; 2.6 ties it again and is not taken
    assert _search.line_maximize(lambda x: min(x, 1.0), 4) == (1.0, 1.0, 4)


def test_line_maximize_needs_one_evaluation():
    with pytest.raises(ValueError, match="^the line search needs a budget of at least one "
                                         "evaluation$"):
        _search.line_maximize(lambda x: 0.0, 0)


def test_largest_feasible_doubles_then_bisects_to_the_tolerance():
    probes = []

    def feasible(gamma):
        probes.append(gamma)
        return gamma <= 3.3

    assert _agnostic.largest_feasible(feasible, 1.0, 0.25) == 3.25
    # doubling 1, 2, 4 (infeasible); halving [2, 4] down to a width of 0.25
    assert probes == [1.0, 2.0, 4.0, 3.0, 3.5, 3.25]


def test_largest_feasible_of_an_unbounded_set_stops_after_its_doublings():
    assert _agnostic.largest_feasible(lambda gamma: True, 1.5, 1e-3) == 1.5 * 2.0 ** 63


def test_the_agnostic_constraints_hold_at_equality():
    # honest 0 and 2 on one coordinate, p = +1: at γ = 1 the largest squared distance,
    # (1 + 1)², equals the largest pairwise one, 4, and their sum, 4 + 0, the largest sum
    honest, direction = rows([0.0], [2.0]), rows(1.0)
    for rule in ("max", "sum"):
        feasible = _agnostic.constraint(honest, direction, rule)
        assert feasible(1.0) and not feasible(1.0 + 1e-9)


# chain: the rounding of unit vectors' products past ±1

def test_chain_unit_rows_leave_a_zero_row_at_zero():
    assert torch.equal(chain.unit_rows(rows([0.0, 0.0], [3.0, 4.0], dtype=torch.float64)),
                       rows([0.0, 0.0], [0.6, 0.8], dtype=torch.float64))


def test_chain_smallest_angle_of_rounded_products():
    parallel = chain.unit_rows(rows([0.3, 2.1], [0.1, 0.7], dtype=torch.float64))
    assert chain.smallest_angle(parallel) == 0.0  # a product of 1 + 2⁻⁵² read as 1
    opposite = chain.unit_rows(rows([0.3, 2.1], [-0.3, -2.1], dtype=torch.float64))
    assert chain.smallest_angle(opposite) == math.pi  # −1 − 2⁻⁵² read as −1
    assert chain.smallest_angle(parallel[:1]) == 0.0


def test_chain_sends_minus_the_mean_when_every_row_is_aligned_with_it():
    # unit products with the mean of 1 + 2⁻⁵² (all parallel) or −1 − 2⁻⁵² (one opposite)
    for honest in (rows([0.3, 2.1], [0.3, 2.1], dtype=torch.float64),
                   rows([0.3, 2.1], [0.3, 2.1], [0.3, 2.1], [-0.3, -2.1], dtype=torch.float64)):
        mean = honest.mean(dim=0)
        size = float(honest.norm(dim=1).median())
        sent = chain.craft(honest, 3, average)
        assert sent.shape == (3, 2)
        torch.testing.assert_close(sent, (-size * mean / mean.norm()).expand(3, -1),
                                   rtol=1e-15, atol=0)


def test_chain_links_in_float64():
    honest = rows([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.5], dtype=torch.float64)
    sent = chain.craft(honest, 2, average)
    mean = honest.mean(dim=0)
    u = mean / mean.norm()
    units = chain.unit_rows(honest)
    cosines = units @ u
    extreme = int(cosines.argmin())
    theta = math.acos(float(cosines[extreme]))
    w = units[extreme] - cosines[extreme] * u
    w = w / w.norm()
    step = chain.smallest_angle(units)
    size = float(honest.norm(dim=1).median())
    for k, link in enumerate(sent, start=1):
        angle = min(theta + k * step, math.pi)
        expected = size * (math.cos(angle) * u + math.sin(angle) * w)
        torch.testing.assert_close(link, expected, rtol=1e-14, atol=1e-15)


# little, the agnostic perturbations and the search on one or two honest rows

def test_little_of_one_row_sends_it_and_of_two_uses_their_std():
    one = rows([1.0, -2.0])
    assert torch.equal(little.craft(one, 2, average), one.expand(2, -1))
    two = rows([0.0], [2.0], dtype=torch.float64)  # mean 1, unbiased std √2
    assert torch.equal(little.craft(two, 1, average),
                       rows([1.0 - 1.5 * 2 ** 0.5], dtype=torch.float64))
    assert little.check(10, 3, 0.0, True, 0) is None
    assert little.check(10, 3, 0.5, True, 0) is None
    assert _search.check_search(2) is None


def test_agnostic_perturbations_of_degenerate_inputs():
    zero_mean = rows([1.0, -1.0], [-1.0, 1.0])
    assert torch.equal(_agnostic.perturbation(zero_mean, "unit"), torch.zeros(2))
    short = rows([0.3, 0.4])  # norm 0.5: still made a unit vector
    torch.testing.assert_close(_agnostic.perturbation(short, "unit"), rows(-0.6, -0.8))
    assert torch.equal(_agnostic.perturbation(short, "std"), torch.zeros(2))


def test_the_search_moves_along_the_direction_not_against_it():
    # a rule taking each coordinate's largest value: only x > 0 along +1 moves it
    honest = rows([1.0, 1.0], [1.0, 1.0])
    sent = _search.along(honest, 1, lambda g: g.max(dim=0).values, rows(1.0, 1.0), 0.0, 4)
    assert torch.equal(sent, rows([8.0, 8.0]))  # x = 0, 1, 3, 7: each better
