"""Issue 22, tests with teeth: properties of simple definitions, checked with hypothesis
(derandomized, small sizes, so every run tries the same examples).

- coordinate-wise median and trimmed mean (through the registered defenses): invariant
  under a permutation of the rows, equivariant under a translation and a scaling;
- clipping (through the engine): no honest row longer than the bound, rows under it
  untouched, rows above it scaled onto it with their direction kept.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from benchmark import engine, registry
from benchmark.config import make_config
from tests.teeth_helpers import CAPTURED, install_capture

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None)
VALUES = st.floats(min_value=-100, max_value=100, allow_nan=False, width=32)


@st.composite
def matrices(draw):
    """(rows [n, d] float32, f) with n >= 2f + 1."""
    f = draw(st.integers(0, 3))
    n = draw(st.integers(2 * f + 1, 2 * f + 5))
    d = draw(st.integers(1, 6))
    rows = draw(arrays(np.float32, (n, d), elements=VALUES))
    return torch.from_numpy(rows), f


def aggregate(name, rows, f):
    return registry.lookup("defense", name).spec.aggregate(rows.clone(), f)


def scale_of(rows):
    return float(rows.abs().max()) + 1.0


@pytest.mark.parametrize("name", ["median", "trmean"])
@SETTINGS
@given(case=matrices(), data=st.data())
def test_permuting_the_rows_changes_nothing(name, case, data):
    rows, f = case
    order = data.draw(st.permutations(range(len(rows))))
    assert torch.equal(aggregate(name, rows[list(order)], f), aggregate(name, rows, f))


@pytest.mark.parametrize("name", ["median", "trmean"])
@SETTINGS
@given(case=matrices(), shift=arrays(np.float32, 6, elements=VALUES))
def test_a_translation_moves_the_aggregate_with_it(name, case, shift):
    rows, f = case
    shift = torch.from_numpy(shift[:rows.shape[1]])
    moved = aggregate(name, rows + shift, f)
    tolerance = 1e-5 * (scale_of(rows) + float(shift.abs().max()))
    assert torch.allclose(moved, aggregate(name, rows, f) + shift, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", ["median", "trmean"])
@SETTINGS
@given(case=matrices(), factor=st.sampled_from([-4.0, -1.0, -0.5, 0.25, 2.0, 3.0]))
def test_a_scaling_scales_the_aggregate(name, case, factor):
    rows, f = case
    scaled = aggregate(name, rows * factor, f)
    tolerance = 1e-5 * scale_of(rows) * abs(factor)
    assert torch.allclose(scaled, aggregate(name, rows, f) * factor, rtol=0, atol=tolerance)


def test_clipping_bounds_every_honest_row(plugin_dir):
    name = install_capture(plugin_dir)

    def rows(clip):
        CAPTURED.clear()
        config = make_config(task="digits", defense=name, attack="none", n=6, f=0, steps=1,
                             momentum_at="update", batch_size=8, clip=clip)
        engine.Simulation(config).step()
        return CAPTURED[0][0]
    unclipped = rows(None)
    norms = unclipped.norm(dim=1)

    @settings(derandomize=True, max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.floats(min_value=0.5, max_value=1.6))
    def check(relative):
        clip = relative * float(norms.median())
        clipped = rows(clip)  # same seed: same rows, same shuffle
        assert (clipped.norm(dim=1) <= clip * (1 + 1e-6)).all()
        above = norms > clip
        assert torch.equal(clipped[~above], unclipped[~above])
        assert torch.allclose(clipped[above], unclipped[above] * (clip / norms[above])[:, None],
                              rtol=1e-5, atol=1e-8)
    check()
