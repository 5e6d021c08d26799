"""pytest-benchmark suite: every registered defense's kernel over the (n, f, d) sweep.

Run by `tox -e bench` (which also writes results/kernels/<device>.json through
`python -m benchmark kernels`, with the ratios to the mean and Gram baselines).
Environment: BENCH_DEVICE=cuda times on the GPU (skipped, with the reason, without
one); BENCH_QUICK=1 uses a tiny shape (a smoke run). Each case records its shape in
extra_info; the `mean` and `gram` baselines of each shape are benchmarks of their own,
in the same group, so `pytest-benchmark compare` shows the rules beside them.
"""
import os

import pytest
import torch

from benchmark import kernels, registry

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
SHAPES = kernels.QUICK_SHAPES if os.environ.get("BENCH_QUICK") else kernels.SHAPES
ROUNDS = 2 if os.environ.get("BENCH_QUICK") else 5
CASES, _ = kernels.plan(registry.names("defense"), SHAPES)
BASELINES = {"mean": lambda x: x.mean(dim=0), "gram": lambda x: x @ x.T}

needs_device = pytest.mark.skipif(
    torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available(),
    reason="BENCH_DEVICE=cuda but torch finds no CUDA device on this machine")


def timed(function, x):
    """The call as the benchmark times it: between two synchronisations on CUDA."""
    if torch.device(DEVICE).type != "cuda":
        return lambda: function(x)

    def call():
        torch.cuda.synchronize()
        function(x)
        torch.cuda.synchronize()
    return call


def group(n, d):
    return f"n={n} d={d}"


@needs_device
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.defense}-n{c.n}-f{c.f}-d{c.d}")
def test_kernel(benchmark, case):
    x = kernels.attacked_input(case.n, case.f_requested, case.d, 0, DEVICE)
    rule = kernels.kernel_function(case.defense, case.f, 0,
                                   kernels.server_input(case.d, 0, DEVICE))
    benchmark.group = group(case.n, case.d)
    benchmark.extra_info.update(defense=case.defense, n=case.n, f=case.f, d=case.d,
                                device=DEVICE)
    benchmark.pedantic(timed(rule, x), rounds=ROUNDS, warmup_rounds=1, iterations=1)


@needs_device
@pytest.mark.parametrize("baseline", sorted(BASELINES))
@pytest.mark.parametrize("shape", sorted({(n, d) for n, _, d in SHAPES}),
                         ids=lambda s: f"n{s[0]}-d{s[1]}")
def test_baseline(benchmark, baseline, shape):
    n, d = shape
    x = kernels.attacked_input(n, 0, d, 0, DEVICE)
    benchmark.group = group(n, d)
    benchmark.extra_info.update(baseline=baseline, n=n, d=d, device=DEVICE)
    benchmark.pedantic(timed(BASELINES[baseline], x), rounds=ROUNDS, warmup_rounds=1,
                       iterations=1)
