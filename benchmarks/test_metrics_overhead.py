"""Cost of the per-step metrics on the paper's MNIST shape: n = 51, f = 24, batch 83,
784-100-10 MLP (d = 79,510), momentum 0.9 at the workers, curvature window 150,
attack little, one thread. Steps with metrics on (benchmarked) alternate with steps of
the same run with metrics off (timed in the benchmark's untimed setup), so that both see
the same machine load; the ratio of the medians is printed and stored in extra_info.

    python -m pytest benchmarks/test_metrics_overhead.py

The task is fashion-mnist (same shape as MNIST) when its files are installed, else a
synthetic task of the same shape: the step's cost does not depend on pixel values.
BENCH_QUICK=1 uses the embedded digits task instead, BENCH_DEVICE=cuda a GPU. On CPU
the timer is the thread's CPU time (the time this process waits for a CPU on a shared
machine is left out); on a GPU, wall time after synchronising. Timings only, no
assertion on them.
"""
import os
import statistics
import time

import pytest
import torch

from benchmark.config import make_config
from benchmark.engine import Simulation

QUICK = bool(os.environ.get("BENCH_QUICK"))
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
TIMER = time.perf_counter if DEVICE.startswith("cuda") else time.thread_time
ROUNDS = 5 if QUICK else 40


@pytest.fixture(scope="module")
def settings(paper_shape):
    return dict(task="digits") if QUICK else paper_shape


def synchronised(step):
    if not DEVICE.startswith("cuda"):
        return step

    def step_and_wait():
        step()
        torch.cuda.synchronize()
    return step_and_wait


@pytest.mark.benchmark(timer=TIMER)
@pytest.mark.parametrize("defense", ["average", "median"])
def test_step_with_metrics(benchmark, settings, defense, capsys):
    steps = {}
    for metrics in (False, True):
        config = make_config(defense=defense, attack="little", momentum_at="worker",
                             metrics=metrics, seed=1, device=DEVICE, **settings)
        simulation = Simulation(config)
        for _ in range(3):  # past the first steps' allocations
            simulation.step()
        steps[metrics] = synchronised(simulation.step)
    off_times = []

    def step_without_metrics():
        started = TIMER()
        steps[False]()
        off_times.append(TIMER() - started)

    benchmark.group = f"step with metrics, {settings['task']}, {DEVICE}"
    benchmark.pedantic(steps[True], setup=step_without_metrics, rounds=ROUNDS,
                       warmup_rounds=2, iterations=1)
    on, off = benchmark.stats.stats.median, statistics.median(off_times)
    benchmark.extra_info.update(settings, defense=defense, device=DEVICE,
                                median_without_metrics=off, overhead_ratio=on / off)
    with capsys.disabled():
        print(f"\n{defense}: median step {off * 1e3:.1f} ms with metrics off, "
              f"{on * 1e3:.1f} ms on ({TIMER.__name__}): ratio {on / off:.3f}")
