"""Cost of running the defense in a process of its own (issue 19): steps of a run whose
defense is isolated (benchmarked) alternate with steps of the same run with the defense in
the run's process (timed in the benchmark's untimed setup), so that both see the same
machine load; the ratio of the medians is printed and stored in extra_info.

    python -m pytest benchmarks/test_defense_isolation.py

Two shapes: the paper's MNIST shape (n = 51, f = 24, d = 79,510; fashion-mnist, or a
synthetic task of that shape) and the embedded digits task (n = 11, f = 2, d = 1,210).
The timer is wall time: the isolated step waits while another process aggregates, which
the thread's CPU time would leave out. Median, little, momentum at the workers. Timings
only, no assertion on them.
"""
import os
import statistics
import time

import pytest

from benchmark.config import make_config
from benchmark.engine import Simulation
from benchmark.host_template import ensure_template

ROUNDS = 10 if os.environ.get("BENCH_QUICK") else 60


@pytest.fixture(scope="module", params=["digits", "paper"])
def settings(request, paper_shape):
    ensure_template()
    return dict(task="digits", f=2) if request.param == "digits" else paper_shape


@pytest.mark.benchmark(timer=time.perf_counter)
@pytest.mark.parametrize("defense", ["median", "krum"])
def test_step_with_isolated_defense(benchmark, settings, defense, capsys):
    steps = {}
    for isolated in (False, True):
        config = make_config(defense=defense, attack="little", momentum_at="worker", seed=1,
                             steps=1000, **settings)
        simulation = Simulation(config, isolate_defense=isolated)
        for _ in range(3):  # past the first steps' allocations
            simulation.step()
        steps[isolated] = simulation
    in_process_times = []

    def in_process_step():
        started = time.perf_counter()
        steps[False].step()
        in_process_times.append(time.perf_counter() - started)

    benchmark.group = f"step with the defense isolated, {settings['task']}"
    benchmark.pedantic(steps[True].step, setup=in_process_step, rounds=ROUNDS,
                       warmup_rounds=2, iterations=1)
    steps[True].close()
    if benchmark.stats is None:  # --benchmark-disable: one round, as a smoke test
        return
    isolated, in_process = benchmark.stats.stats.median, statistics.median(in_process_times)
    benchmark.extra_info.update(settings, defense=defense, median_in_process=in_process,
                                overhead_ratio=isolated / in_process)
    with capsys.disabled():
        print(f"\n{settings['task']} {defense}: median step {in_process * 1e3:.2f} ms in "
              f"process, {isolated * 1e3:.2f} ms isolated: ratio {isolated / in_process:.3f}")
