"""The processes a defense runs in (issue 19), on their side: a template, and a host per run.

A defense that runs in the process holding the simulation can read everything there: walk
the stack up to the shuffled rows, scan the garbage collector for the permutation, patch
another rule for later cells. So the run asks a *template* process for a *host*: the
template is started once (`python -m benchmark.defense_host`, imports torch and the
harness's kernels, never a plugin) and forks a fresh host for each run. The host imports
only the modules of the defense's own components, from their files, and holds only what
it is sent: its options, f, its generator and state, and each step's rows (shared memory,
written by the run's channel, no copy). It works in an empty scratch folder, in a session
of its own, and dies with its run (benchmark.isolated_defense is the run's side).

The template reaps: a host whose run process is gone, and any other process that ends up
its child (a host's orphaned descendants, through the child subreaper flag), is killed.
It ends when the process that started it closes its stdin.
"""
from __future__ import annotations

import faulthandler
import importlib
import mmap
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import warnings
from multiprocessing.connection import Listener

from .host_handoff import ControlBlock, Waiter
from .host_wire import WAKE, is_wake, raised_reply, receive, send_reply
from .process_guard import drop_privileges, keep_memory_private

MEMORY_ALLOWANCE = 4 << 30  # bytes of address space a host may add to what the template maps


def _load_components(entries: list[dict]):
    """The defense's components from their own module files (no discovery: importing every
    module of defenses/ would run a hostile one's import-time code in this host too)."""
    from . import registry

    components = []
    for entry in entries:
        folder, stem = entry["folder"], entry["stem"]
        if entry["package"]:
            module = importlib.import_module(f"{registry.KINDS['defense'][0]}.{stem}")
        else:
            from pathlib import Path
            module = registry._import_external(Path(folder), registry.KINDS["defense"][0], stem)
        spec = module.defense
        plugin = registry.Plugin(spec.name, spec, entry["path"])
        components.append(registry.Component(plugin, entry["options"]))
    return components


class Host:
    """One run's defense, served over `connection` until the run closes it."""

    def __init__(self, connection, setup: dict):
        import torch

        from .plugins import BoundDefense

        self.connection = connection
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        generator = torch.Generator(device="cpu")
        generator.set_state(setup["generator"])
        from multiprocessing.reduction import recv_handle

        self.crash_report = os.fdopen(recv_handle(connection), "w")  # the run reads it
        faulthandler.enable(file=self.crash_report)
        self.defense = BoundDefense("", setup["f"], generator,
                                    components=_load_components(setup["components"]))
        self.rows = self.output = self.control = self.dtype = None
        self.answered = 0  # the last call through the control block answered
        self.torch = torch
        self.waiter = Waiter(setup["polls"])  # as its run does (benchmark.host_handoff)

    @staticmethod
    def _attach(handle: int, nbytes: int, writable: bool):
        """The run's buffer: the rows read-only (a write kills the host, so the run need not
        compare them again), the output writable."""
        buffer = mmap.mmap(handle, nbytes, prot=mmap.PROT_READ | (mmap.PROT_WRITE * writable))
        os.close(handle)
        return buffer

    def serve(self) -> None:
        from multiprocessing.reduction import recv_handle

        connection = self.connection
        send_reply(connection, ("ready",))
        while True:
            arrived = self.waiter.wait(connection, arrived=self._called, asleep=self._asleep)
            if arrived == "block":
                self._answer_block()
                continue
            try:
                message = receive(connection)
            except EOFError:
                return
            kind = message[0]
            if kind == "buffers":  # ("buffers", bytes of rows, output, control block, dtype)
                handles = [recv_handle(connection) for _ in range(3)]
                self.rows = self._attach(handles[0], message[1], False)
                self.output = self._attach(handles[1], message[2], True)
                self.control = ControlBlock(self._attach(handles[2], message[3], True))
                self.dtype = message[4]
                self.answered = 0  # a new block is zeros; the run's calls count from 1
                continue
            if kind == "close":
                return
            if is_wake(message):
                continue
            try:
                reply = getattr(self, f"_{kind}")(*message[1:])
            except BaseException as error:  # whatever the plugin raises ends in a reply
                reply = raised_reply(error)
            send_reply(connection, reply)

    def _called(self) -> bool:
        return self.control is not None and \
            self.control.slots[ControlBlock.REQUEST] != self.answered

    def _asleep(self, asleep: bool) -> None:
        if self.control is not None:
            self.control.slots[ControlBlock.HOST_ASLEEP] = int(asleep)

    def _answer_block(self) -> None:
        """Answers the call in the control block: there if it can, else on the socket."""
        block, slots = self.control, self.control.slots
        called = slots[ControlBlock.REQUEST]
        try:
            reply = self._aggregate(slots[ControlBlock.ROWS], slots[ControlBlock.WIDTH],
                                    self.dtype, None)
        except BaseException as error:
            reply = raised_reply(error)
        if reply[0] == "ok" and block.write_selection(reply[1]):
            slots[ControlBlock.KIND] = ControlBlock.OK
        else:
            send_reply(self.connection, reply)
            slots[ControlBlock.KIND] = ControlBlock.ON_SOCKET
        self.answered = slots[ControlBlock.ANSWER] = called
        if slots[ControlBlock.RUN_ASLEEP]:
            send_reply(self.connection, WAKE)

    def _aggregate(self, rows: int, d: int, dtype, server_gradient):
        from .plugins import PluginFailure

        torch = self.torch
        matrix = torch.frombuffer(self.rows, dtype=dtype, count=rows * d).view(rows, d)
        self.defense.server_gradient = server_gradient
        try:
            vector, selected = self.defense(matrix)
        except PluginFailure as failure:
            return ("failed", str(failure))
        except BaseException as error:  # KeyboardInterrupt: never the user's Ctrl-C here,
            return ("failed", f"defense raised {type(error).__name__}: {error}")  # own session
        torch.frombuffer(self.output, dtype=dtype, count=d).copy_(vector)
        if selected is not None:
            selected = selected.tolist() if isinstance(selected, torch.Tensor) else list(selected)
        return ("ok", selected)

    def _probe(self, gradients, server_gradient):
        self.defense.server_gradient = server_gradient
        return ("ok", self.defense.probe(gradients))

    def _state(self):
        return ("ok", self.defense.states, self.defense.generator.get_state())

    def _cpu(self):
        return ("ok", time.process_time() - self.waiter.spun)

    def _set_state(self, states, generator):
        self.defense.states = states
        self.defense.generator.set_state(generator)
        return ("ok",)


def _limit_memory() -> None:
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + MEMORY_ALLOWANCE
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _host(connection) -> None:
    """In the forked child: becomes a host and never returns."""
    code = 0
    try:
        os.setsid()
        # whatever the template inherited (a run started in the background ignores
        # SIGINT), a defense that raises SIGINT in its host gets KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from .worker_hygiene import adopt_orphans
        adopt_orphans()
        os.chdir(tempfile.mkdtemp(prefix="defense-host-"))
        if sys.platform.startswith("linux"):
            _limit_memory()
        drop_privileges()  # before any plugin is imported (benchmark.process_guard)
        setup = receive(connection)
        if setup["plugin_path"] is None:
            os.environ.pop("BENCHMARK_PLUGINS", None)
        else:
            os.environ["BENCHMARK_PLUGINS"] = setup["plugin_path"]
        if setup.get("catalog"):  # every defense's declarations (benchmark.defense_catalog)
            from .defense_catalog import serve
            serve(connection)
            return
        try:
            host = Host(connection, setup)
        except BaseException as error:  # a component that fails to import or to build
            send_reply(connection, raised_reply(error))
            raise
        host.serve()
    except BaseException:  # noqa: BLE001 (the run sees the connection close)
        code = 1
    finally:
        os._exit(code)


def _watch(hosts: dict[int, int], forking: threading.Lock) -> None:
    """Reaps finished children; kills hosts whose run process is gone and every other
    child (what a host's descendants left behind)."""
    from .worker_hygiene import children, kill_group, reap_finished

    while True:
        time.sleep(0.2)
        with forking:  # a host just forked is in `hosts` before it is looked at
            for pid in reap_finished():
                hosts.pop(pid, None)
            for pid in children():
                owner = hosts.get(pid)
                if owner is None or not _alive(owner):
                    kill_group(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_with_starter(hosts: dict[int, int]) -> None:
    from .worker_hygiene import kill_group

    sys.stdin.buffer.read()  # returns when the starting process closes it (or dies)
    for pid in list(hosts):
        kill_group(pid)
    os._exit(0)


def main() -> None:
    from . import processes
    from .coordinates_numba import warm_up
    from .worker_hygiene import adopt_orphans

    processes.single_thread()
    keep_memory_private()  # its hosts, once without capabilities, cannot read or attach to it
    for module in ("torch", f"{__package__}.plugins"):  # imported once, inherited by each host
        importlib.import_module(module)
    warm_up()
    authkey = bytes.fromhex(sys.stdin.buffer.readline().decode().strip())
    adopt_orphans()
    listener = Listener(family="AF_UNIX", authkey=authkey)
    sys.stdout.write(f"{listener.address}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what a defense prints: the run's stderr
    hosts: dict[int, int] = {}
    forking = threading.Lock()
    threading.Thread(target=_watch, args=(hosts, forking), daemon=True).start()
    threading.Thread(target=_exit_with_starter, args=(hosts,), daemon=True).start()
    while True:
        try:
            connection = listener.accept()
            owner = receive(connection)
        except (OSError, EOFError, ValueError):
            continue  # a client that failed the handshake or left
        with forking:
            pid = os.fork()
            if pid == 0:
                listener.close()
                _host(connection)
            hosts[pid] = owner
        send_reply(connection, pid)
        connection.close()


if __name__ == "__main__":
    main()
