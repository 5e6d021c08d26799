"""Shared by the tests_teeth_* modules (issue 22, "tests with teeth"): a defense that records
what it is given, an independent reference for the honest workers' gradients, and row
matching that ignores the shuffle.

Everything here reaches the engine through its public surface: plugins written into a
BENCHMARK_PLUGINS folder (tests.plugin_fixtures), `Simulation(config).step()`, the
simulation's `theta`, `data` and `config`, `engine.stream_seed` and `benchmark.sampling`.
"""
from __future__ import annotations

import torch

from benchmark import engine, registry
from benchmark.sampling import IidSampler
from tests.plugin_fixtures import write_plugin

# Filled by the `teeth-capture` defense: one entry per call, (its input, its output).
CAPTURED: list[tuple[torch.Tensor, torch.Tensor]] = []

CAPTURE_DEFENSE = """
    from benchmark.api import Defense
    from tests import teeth_helpers

    def aggregate(gradients, f):
        output = gradients.mean(dim=0)
        teeth_helpers.CAPTURED.append((gradients.clone(), output.clone()))
        return output

    defense = Defense(name="teeth-capture", aggregate=aggregate,
                      description="the average, recording its input (tests only)")
"""


def install_capture(plugin_dir) -> str:
    """Writes the recording defense (the plain average) and returns its name."""
    CAPTURED.clear()
    write_plugin(plugin_dir, "defenses", "teeth_capture", CAPTURE_DEFENSE)
    return "teeth-capture"


def task_spec(name: str):
    return registry.lookup("task", name).spec


def data_sampler(config) -> IidSampler:
    """The i.i.d. sampler a run of `config` uses, rebuilt from its seed: same batches."""
    data = engine.load_task_data(config.task, config.data_dir)
    generator = torch.Generator().manual_seed(engine.stream_seed(config.seed, "data"))
    return IidSampler(len(data.train_targets), config.batch_size, generator)


def reference_gradients(config, theta: torch.Tensor, indices: torch.Tensor,
                        flipped_from: int | None = None, clip=...) -> torch.Tensor:
    """Per-worker gradients of the task's loss (+ l2·θ) at `theta` on the batches `indices`
    [workers, b], computed with plain autograd (not the engine's fused/vmap code), clipped
    at `clip` (the config's by default); the labels of workers >= `flipped_from` mapped
    y -> C-1-y."""
    spec = task_spec(config.task)
    data = engine.load_task_data(config.task, config.data_dir)
    model = spec.model()
    torch.nn.utils.vector_to_parameters(theta.detach().clone(), model.parameters())
    model.train()
    clip = config.clip if clip is ... else clip
    rows = []
    for worker, batch in enumerate(indices):
        inputs, targets = data.train_inputs[batch], data.train_targets[batch].clone()
        if flipped_from is not None and worker >= flipped_from:
            targets = data.num_classes - 1 - targets
        model.zero_grad()
        spec.loss(model(inputs), targets).backward()
        gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        gradient = gradient + config.l2 * theta
        if clip is not None and gradient.norm() > clip:
            gradient = gradient * (clip / gradient.norm())
        rows.append(gradient.detach())
    return torch.stack(rows)


def match_rows(actual: torch.Tensor, expected: torch.Tensor, rtol=1e-4, atol=1e-6) -> list[int]:
    """For each expected row, the index of the actual row equal to it (within tolerance);
    asserts that they pair up one to one (the defense sees the rows shuffled)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    pairing = []
    for i, row in enumerate(expected):
        close = [j for j, other in enumerate(actual)
                 if torch.allclose(other, row, rtol=rtol, atol=atol)]
        assert len(close) == 1, f"expected row {i} matches actual rows {close}"
        pairing.append(close[0])
    assert sorted(pairing) == list(range(len(actual)))
    return pairing


def average(gradients):
    """A plain rule for the attacks' tests: no declared f, so an attack takes its own f."""
    return gradients.mean(dim=0)


def rows(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)
