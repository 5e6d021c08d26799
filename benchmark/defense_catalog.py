"""The defenses' declarations, learnt from a child process (issue 19).

Discovery imports every module of defenses/, and a module runs whatever it likes when it
is imported: in the process that holds a simulation, a submitted module could switch the
isolation off (`isolated_defense.wanted`), or patch the engine to hand the honest rows to
its rule. So when a command runs cells with isolated defenses (`cell`, `run`, `verify`),
its processes never import a defense module: `registry.discover("defense")` returns
`Defense` objects whose data (name, options, flags, version, `needs`) come from a catalog
process, forked from the defense host template (benchmark.defense_host), which imports
them; their `check`, `upper_bound` and `resize` are calls to that process, answered as
data only (benchmark.host_wire). Their `aggregate` is never called in the run: the run's
own host (benchmark.isolated_defense) imports the rule's files and runs it.

Runs that still call a rule in the run's process (on a GPU) import the defenses there
(`cells.run_cell`).
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from .host_wire import (raised_exception, raised_reply, receive, receive_reply, send,
                        send_reply)

VARIABLE = "BENCHMARK_DEFENSE_DECLARATIONS"  # "child": this process imports no defense
CALLS = ("check", "upper_bound", "resize")
FIELDS = ("description", "reference", "requirement", "options", "randomized", "stateful",
          "preaggregator", "keeps_rows", "server_gradient", "version")


def wanted() -> bool:
    """Whether this process takes the defenses' declarations from a catalog process."""
    return os.environ.get(VARIABLE) == "child"


@contextlib.contextmanager
def imported_here(needed: bool = True):
    """Within it (if `needed`), the defenses resolved are imported in this process: for a
    run that calls a rule here."""
    saved = os.environ.get(VARIABLE)
    if needed:
        os.environ.pop(VARIABLE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[VARIABLE] = saved


# --- the catalog's side (in a process forked from the template) --------------------------

def _record(plugin) -> dict:
    spec = plugin.spec
    declared = None if spec is None else {
        **{name: getattr(spec, name) for name in FIELDS},
        "needs": (spec.needs.times, spec.needs.plus),
        "calls": [name for name in CALLS if getattr(spec, name) is not None]}
    return {"name": plugin.name, "path": str(plugin.path), "error": plugin.error,
            "spec": declared}


_AS_DATA = {"check": lambda value: None if value is None else str(value),
            "upper_bound": lambda value: None if value is None else float(value),
            "resize": lambda value: None if value is None else tuple(int(v) for v in value)}


def serve(connection) -> None:
    """Imports every defense and answers calls of their declarations until the run leaves."""
    from . import registry

    os.environ.pop(VARIABLE, None)  # this process is the one that imports them
    plugins = registry.discover("defense")
    send_reply(connection, ("ready", [_record(plugin) for plugin in plugins.values()]))
    while True:
        try:
            name, call, args, options = receive(connection)
        except EOFError:
            return
        try:
            reply = ("ok", _AS_DATA[call](getattr(plugins[name].spec, call)(*args, **options)))
        except BaseException as error:  # a declaration that raises fails the caller's call
            reply = raised_reply(error)
        send_reply(connection, reply)


# --- the run's side ----------------------------------------------------------------------

class _Catalog:
    def __init__(self):
        from .host_template import TEMPLATE
        from .process_guard import keep_memory_private

        keep_memory_private()  # the catalog cannot read this process
        self.lock = threading.Lock()
        self.connection = TEMPLATE.connect()
        send(self.connection, os.getpid())
        self.pid = receive_reply(self.connection)
        send(self.connection, {"catalog": True,
                               "plugin_path": os.environ.get("BENCHMARK_PLUGINS")})
        reply = receive_reply(self.connection)
        if reply[0] != "ready":
            raise RuntimeError(f"the defense catalog did not start: {reply[1]}: {reply[2]}")
        self.records = reply[1]
        self.answers: dict[tuple, tuple] = {}
        self.owner = os.getpid()

    def call(self, name: str, call: str, args: tuple, options: dict):
        """A declaration's answer; the same question is asked once (a profile's expansion
        asks each rule about each (n, f) many times)."""
        from .api import UsageError

        key = (name, call, args, tuple(sorted(options.items())))
        with self.lock:
            reply = self.answers.get(key)
            if reply is None:
                send(self.connection, (name, call, args, options))
                reply = self.answers[key] = receive_reply(self.connection)
        if reply[0] == "raised":  # a declaration's UsageError is the user's to read
            raise UsageError(reply[2]) if reply[1] == "UsageError" else raised_exception(reply)
        return reply[1]


_catalog: _Catalog | None = None


def _current() -> _Catalog:
    """This process's catalog (a forked child starts its own)."""
    global _catalog
    if _catalog is None or _catalog.owner != os.getpid():
        _catalog = _Catalog()
    return _catalog


class _Call:
    def __init__(self, name: str, call: str):
        self.name, self.call = name, call

    def __call__(self, *args, **options):
        return _current().call(self.name, self.call, args, options)


def _not_here(*args, **options):
    raise RuntimeError("this process holds the defenses' declarations only; the rule runs "
                       "in its own process (benchmark.isolated_defense)")


def plugins() -> dict:
    """What registry.discover("defense") returns, from a fresh catalog."""
    from .api import Defense
    from .registry import Plugin
    from .requirements import AtLeast

    global _catalog
    _catalog = None
    found = {}
    for record in _current().records:
        declared, name = record["spec"], record["name"]
        spec = None if declared is None else Defense(
            name=name, aggregate=_not_here, needs=AtLeast(*declared["needs"]),
            **{field: declared[field] for field in FIELDS},
            **{call: _Call(name, call) for call in declared["calls"]})
        found[name] = Plugin(name, spec, Path(record["path"]), record["error"])
    return found
