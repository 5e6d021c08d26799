"""Each step's call to an isolated defense through the shared control block (issue 19):
answered the same whether either side polls or sleeps, wake-ups that come late or never
cost no call, a wrong answer from the host fails its cell, and polling is kept out of a
run's recorded CPU time."""
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection

import pytest
import torch

from benchmark.host_handoff import (POLL_VARIABLE, ControlBlock, Waiter, polling_wanted,
                                    set_concurrent_runs)
from benchmark.isolated_defense import IsolatedDefense
from benchmark.plugins import BoundDefense, PluginFailure
from tests.plugin_fixtures import write_plugin

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="isolation is built for Linux")


@pytest.fixture
def connection():
    ours, theirs = socket.socketpair()
    yield Connection(ours.detach())
    theirs.close()


def test_a_selection_goes_through_the_block_and_one_that_cannot_fit_is_refused():
    block = ControlBlock(bytearray(ControlBlock.nbytes(5)))
    assert block.write_selection([4, 0, 2])
    assert block.read_selection(5) == [4, 0, 2]
    assert block.write_selection(None)
    assert block.read_selection(5) is None
    assert not block.write_selection(list(range(6)))  # the socket carries it instead
    assert not block.write_selection([1, "2"])


@pytest.mark.parametrize("count", [6, -2, 1 << 40])
def test_a_selection_count_the_host_could_not_have_meant_is_an_error(count):
    block = ControlBlock(bytearray(ControlBlock.nbytes(5)))
    block.slots[ControlBlock.COUNT] = count
    with pytest.raises(ValueError, match=f"a selection of {count} rows out of 5"):
        block.read_selection(5)


@pytest.mark.parametrize("runs, polls", [(1, True), (2, False), (None, False)])
def test_runs_poll_only_with_two_cores_each(monkeypatch, runs, polls):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv(POLL_VARIABLE, raising=False)
    assert polling_wanted()  # a lone run (`cell`) with a core to spare
    set_concurrent_runs(runs)  # None: a remote cluster, whose load is not known here
    assert polling_wanted() is polls
    assert Waiter(polling_wanted()).limit == (Waiter.SPIN_LIMIT if polls else 0)


def test_a_waiter_that_does_not_poll_sleeps_at_once(connection):
    waiter, asleep = Waiter(polls=False), []
    assert waiter.wait(connection, 0.02, asleep=asleep.append) is None
    assert asleep == [True, False] and waiter.spun == 0.0


def test_after_short_waits_the_waiter_polls_and_sees_the_block_at_once(connection,
                                                                       monkeypatch):
    monkeypatch.setattr(Waiter, "SPIN_LIMIT", 1.0)
    waiter, flag, asleep = Waiter(), threading.Event(), []
    threading.Timer(0.05, flag.set).start()
    assert waiter.wait(connection, 5, arrived=flag.is_set, asleep=asleep.append) == "block"
    assert asleep == []  # it never slept
    assert waiter.spun > 0  # polling costs CPU, and it is counted


def test_after_a_long_wait_the_waiter_sleeps_at_once_and_says_so(connection):
    waiter, asleep = Waiter(), []
    waiter.last_wait = 1.0  # a large model's step: polling would only burn the core
    started = time.monotonic()
    assert waiter.wait(connection, 0.05, asleep=asleep.append) is None
    assert time.monotonic() - started >= 0.05
    assert asleep == [True, False]
    assert waiter.spun == 0.0


def test_the_waiter_polls_no_longer_than_its_limit_then_sleeps(connection):
    waiter = Waiter()
    assert waiter.wait(connection, 0.1) is None
    assert 0 < waiter.spun < 0.05  # about SPIN_LIMIT of CPU, not the whole 0.1 s
    assert waiter.last_wait >= 0.1


def test_a_lost_wake_up_costs_a_nap_not_a_hang(connection):
    """The other side answers in the block just as this one goes to sleep, having read
    its flag before it was set, so it sends no wake-up: the answer is not there when the
    sleeper looks, but is when it looks again after its first nap."""
    waiter, looks = Waiter(), iter([False, True])
    waiter.last_wait = 1.0
    started = time.monotonic()
    assert waiter.wait(connection, 5, arrived=lambda: next(looks)) == "block"
    assert time.monotonic() - started < 1  # a nap of Waiter.NAP, not the 5 s timeout


def test_a_message_on_the_socket_ends_the_wait():
    ours, theirs = (Connection(end.detach()) for end in socket.socketpair())
    waiter = Waiter()
    waiter.last_wait = 1.0
    threading.Timer(0.02, theirs.send_bytes, args=(b"x",)).start()
    assert waiter.wait(ours, 5) == "socket"
    assert ours.recv_bytes() == b"x"


SLOW = """
    import time
    from benchmark.api import Defense

    def aggregate(gradients, f):
        if gradients[0, 0] < -100:
            raise ValueError("a row far too low")
        time.sleep({seconds})
        return gradients.median(dim=0).values

    defense = Defense(name="slow", aggregate=aggregate)
"""


@linux_only
@pytest.mark.parametrize("run_polls", [True, False])
@pytest.mark.parametrize("pause", [0.0, 0.02])
def test_a_call_is_answered_the_same_whether_each_side_polls_or_sleeps(
        plugin_dir, monkeypatch, run_polls, pause):
    """pause: between calls, longer than the host's polling (it sleeps and must be woken);
    run_polls False: both sides sleep at once (each must wake the other)."""
    write_plugin(plugin_dir, "defenses", "slow", SLOW.format(seconds=0.003))
    monkeypatch.setenv(POLL_VARIABLE, "1" if run_polls else "0")
    inputs = torch.randn(12, 7, 30, generator=torch.Generator().manual_seed(3))
    for text in ("krum", "slow"):
        reference = BoundDefense(text, 2, torch.Generator().manual_seed(1))
        isolated = IsolatedDefense(text, 2, torch.Generator().manual_seed(1),
                                   deadline=time.monotonic() + 60)
        try:
            for rows in inputs:
                vector, selected = isolated(rows)
                expected, expected_selected = reference(rows)
                assert torch.equal(vector, expected)
                assert (selected is None) == (expected_selected is None)
                if selected is not None:
                    assert torch.equal(selected, torch.as_tensor(expected_selected))
                time.sleep(pause)
            if text == "slow":  # a failure's reason comes on the socket
                with pytest.raises(PluginFailure, match="a row far too low"):
                    isolated(torch.full((7, 30), -1000.0))
            assert isolated.states == reference.states  # the socket, past any late wake
            assert 0 <= isolated.cpu_seconds() < 1  # its own work, not its polling
        finally:
            isolated.close()


@linux_only
def test_a_host_that_writes_a_selection_count_it_cannot_have_fails_the_call(plugin_dir):
    write_plugin(plugin_dir, "defenses", "liar", """
        import gc
        import threading
        from benchmark.api import Defense
        from benchmark.host_handoff import ControlBlock

        def lie():
            blocks = [o for o in gc.get_objects() if isinstance(o, ControlBlock)]
            while True:
                for block in blocks:
                    block.slots[ControlBlock.COUNT] = 1 << 40

        def aggregate(gradients, f):
            threading.Thread(target=lie, daemon=True).start()
            return gradients.mean(dim=0)

        defense = Defense(name="liar", aggregate=aggregate)
    """)
    isolated = IsolatedDefense("liar", 1, torch.Generator().manual_seed(1),
                               deadline=time.monotonic() + 60)
    try:
        with pytest.raises(PluginFailure, match="wrote a wrong answer while aggregating"):
            for _ in range(50):
                isolated(torch.ones(5, 4))
    finally:
        isolated.close()


def test_closing_a_run_adds_its_hosts_cpu_less_the_runs_polling(monkeypatch):
    """Every isolated rule of the run (replicated servers have several) counts: its host's
    CPU time, less what the run spent polling for its answers."""
    from benchmark.config import make_config
    from benchmark.engine import Simulation

    class Host:
        def __init__(self, cpu, polled):
            self.cpu, self.polled, self.closed = cpu, polled, False

        def cpu_seconds(self):
            return self.cpu

        def polled_seconds(self):
            return self.polled

        def close(self):
            self.closed = True

    simulation = Simulation(make_config(task="digits", defense="median", attack="little",
                                        steps=1), isolate_defense=False)
    simulation.isolated = [Host(0.5, 0.125), Host(0.25, 0.0625)]
    assert simulation.close() == 0.5 - 0.125 + 0.25 - 0.0625
    assert all(host.closed for host in simulation.isolated)


@linux_only
def test_every_rule_of_a_replicated_run_has_a_host_and_each_channel_builds_in_its_memory():
    """No copy a step: each channel writes its rows straight into the shared memory of the
    defense it feeds, and the model rules run in hosts of their own too."""
    from benchmark.config import make_config
    from benchmark.engine import Simulation

    simulation = Simulation(make_config(task="digits", defense="median", attack="little",
                                        steps=2, servers=4, byzantine_servers=1,
                                        server_attack="model-little"), isolate_defense=True)
    try:
        simulation.step()
        replicas = simulation.replicas
        for channel, server in zip(replicas.channels, replicas.servers):
            assert isinstance(server.defense, IsolatedDefense)
            assert channel.allocate == server.defense.input_buffer
        assert len({id(server.defense) for server in replicas.servers}) == len(replicas.servers)
        assert isinstance(replicas.pull_rule, IsolatedDefense)
        assert isinstance(replicas.gather_rule, IsolatedDefense)
        plain = Simulation(make_config(task="digits", defense="median", attack="little",
                                       steps=1), isolate_defense=True)
        assert plain.channel.allocate == plain.server.defense.input_buffer
        plain.close()
    finally:
        simulation.close()
