"""Bulyan's ICLR'21-harness variant against a plain-loop reference of its procedure."""
import math

import pytest
import torch

from benchmark import registry
from benchmark.config import make_config
from benchmark.matrix import expand, load_profile
from defenses.bulyan import mean_around_lower_median


def reference(rows, f):
    n = len(rows)
    dist = [[math.dist(a, b) if i != j else math.inf for j, b in enumerate(rows)]
            for i, a in enumerate(rows)]
    m = n - f - 2
    nearest = [sorted(range(n), key=lambda j: (dist[i][j], j))[:m] for i in range(n)]
    scores = [sum(dist[i][j] for j in nearest[i]) for i in range(n)]
    theta = n - 2 * f - 2
    stored = []
    for step in range(theta):
        order = sorted(range(n), key=lambda i: (scores[i], i))
        chosen = order[:m - step]
        stored.append([sum(rows[i][k] for i in chosen) / len(chosen) for k in range(len(rows[0]))])
        best = order[0]
        for i in range(n):
            if best in nearest[i]:
                scores[i] -= dist[i][best]
        scores[best] = math.inf
    beta = theta - 2 * f
    result = []
    for k in range(len(rows[0])):
        column = sorted(s[k] for s in stored)
        median = column[(len(column) - 1) // 2]  # lower median
        closest = sorted(column, key=lambda v: (abs(v - median), v))[:beta]
        result.append(sum(closest) / beta)
    return result


@pytest.mark.parametrize("n, f, seed", [(7, 1, 0), (11, 2, 1), (12, 2, 2), (15, 3, 3)])
def test_iclr21_variant_matches_the_reference(n, f, seed):
    gradients = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed),
                            dtype=torch.float64)
    bulyan = registry.lookup("defense", "bulyan").spec
    result = bulyan.aggregate(gradients, f, variant="iclr21").vector
    assert torch.allclose(result, torch.tensor(reference(gradients.tolist(), f),
                                               dtype=torch.float64))


def test_iclr21_variant_rejects_unknown_variants():
    bulyan = registry.lookup("defense", "bulyan").spec
    assert "variant" in bulyan.check(11, 2, variant="nope")
    assert bulyan.check(11, 2, variant="iclr21") is None


def test_paper_profile_selects_the_iclr21_variant():
    cells = expand(load_profile("paper"), "bulyan", tasks=["mnist"], attacks=["little"],
                   placements=["worker"], seeds=[1])
    assert cells and all("variant=iclr21" in cell.config.defense for cell in cells)


def torch_closest_to_lower_median(stored, beta):
    median = stored.median(dim=0).values
    closest = (stored - median).abs_().topk(beta, dim=0, largest=False).indices
    return stored.gather(0, closest).mean(dim=0)


@pytest.mark.parametrize("count", [1, 3, 7, 25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iclr21_one_value_around_an_odd_median_is_torchs_bit_for_bit(count, dtype):
    """The compiled median that serves θ odd, β = 1 (the paper's n = 51, f = 12) gives
    torch's median/topk/mean bits, ties and repeated rows included."""
    generator = torch.Generator().manual_seed(count)
    for stored in (torch.randn(count, 1000, generator=generator, dtype=dtype),
                   (torch.randn(count, 1000, generator=generator, dtype=dtype) * 2).round(),
                   torch.randn(1, 1000, generator=generator, dtype=dtype).expand(count, -1)):
        fast = mean_around_lower_median(stored, 1)
        assert torch.equal(fast, torch_closest_to_lower_median(stored, 1))


def test_iclr21_non_finite_values_keep_torchs_path():
    stored = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    stored[1, 2], stored[3, 4] = math.nan, math.inf
    torch.testing.assert_close(mean_around_lower_median(stored, 1),
                               torch_closest_to_lower_median(stored, 1), rtol=0, atol=0,
                               equal_nan=True)
