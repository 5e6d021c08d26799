"""Issue 22, tests with teeth: the Dirichlet split's concentration, measured.

`dirichlet_partition` draws each worker's label proportions from
Dir(alpha · C · prior): on balanced data (prior 1/C) that is Dir(alpha, ..., alpha), alpha
per class. For q ~ Dir(a, ..., a) over C classes, E[Σ_c q_c²] = (a + 1) / (C·a + 1); a worker
that then draws m examples by those proportions has E[Σ_c p̂_c²] = E[Σ q²] + (1 − E[Σ q²]) / m.

Mutation killed: the class count C dropped from the concentration (Dir(alpha · prior), i.e.
alpha / C per class), which the existing tests (ordering in alpha, broad thresholds) let
through: at alpha = 1 and C = 10 it moves E[Σ p̂²] from 0.18 to 0.55.
"""
import numpy as np
import pytest
import torch

from benchmark.sampling import dirichlet_partition

CLASSES, PER_CLASS, WORKERS = 10, 6000, 200  # 60,000 labels, 300 per worker
LABELS = torch.arange(CLASSES).repeat_interleave(PER_CLASS)


def mean_squared_proportions(alpha, seed=11):
    parts = dirichlet_partition(LABELS, WORKERS, alpha, torch.Generator().manual_seed(seed))
    proportions = np.stack([np.bincount(LABELS[part].numpy(), minlength=CLASSES) / len(part)
                            for part in parts])
    squares = (proportions ** 2).sum(axis=1)
    return squares, len(parts[0])


def expected_squared_proportions(per_class, size):
    clean = (per_class + 1) / (CLASSES * per_class + 1)
    return clean + (1 - clean) / size


# Small alphas are left out: there the last workers served, who take what is left, bias the
# mean upwards (0.366 measured against 0.327 at alpha = 0.3).
@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_the_concentration_is_alpha_per_class(alpha):
    squares, size = mean_squared_proportions(alpha)
    mean = squares.mean()
    right = expected_squared_proportions(alpha, size)
    without_classes = expected_squared_proportions(alpha / CLASSES, size)
    assert mean == pytest.approx(right, rel=0.08), (mean, right, without_classes)
    # the other reading of alpha is far outside the tolerance
    assert abs(mean - without_classes) > 4 * abs(mean - right)


def test_a_large_alpha_is_close_to_the_multinomial_floor():
    # alpha = 50 per class: E[Σ q²] = 51 / 501 ≈ 0.1018 (alpha / C = 5 per class would give
    # 6 / 51 ≈ 0.118); the sampling floor 1/C + (1 − 1/C)/m is 0.103
    squares, size = mean_squared_proportions(50.0)
    assert squares.mean() == pytest.approx(expected_squared_proportions(50.0, size), rel=0.03)
    assert squares.mean() < expected_squared_proportions(5.0, size) - 0.01
