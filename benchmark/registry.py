"""Plugin discovery and plugin names with options.

A plugin is any module in `defenses/`, `attacks/`, `tasks/` or `server_attacks/` that
defines a module-level `defense`, `attack`, `task` or `server_attack` object. Folders listed in the
environment variable BENCHMARK_PLUGINS (separated by os.pathsep) are searched
too, each for its own `defenses/`, `attacks/` and `tasks/` subfolders: a way to
develop plugins outside the repository (and to test broken ones). Names on the command line
carry options after a colon and pre-aggregators before a plus sign:
`krum:m=5`, `little:factor=1.0,negative=false`, `nnm+trmean`.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import Attack, Defense, ServerAttack, Task, UsageError

KINDS = {"defense": ("defenses", Defense), "attack": ("attacks", Attack), "task": ("tasks", Task),
         "server_attack": ("server_attacks", ServerAttack)}
HIDDEN = {"template"}  # discoverable by name, left out of listings and matrices


@dataclass(frozen=True)
class Plugin:
    """A discovered plugin: its spec (None if its module failed to import) and source file."""
    name: str
    spec: Any
    path: Path
    error: str | None = None


PLUGIN_PATH_VARIABLE = "BENCHMARK_PLUGINS"


def _import_external(folder: Path, package_name: str, stem: str):
    module_name = f"_benchmark_plugins.{package_name}.{stem}_{abs(hash(str(folder))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    location = importlib.util.spec_from_file_location(module_name, folder / f"{stem}.py")
    module = importlib.util.module_from_spec(location)
    sys.modules[module_name] = module
    try:
        location.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _module_sources(package_name: str):
    """(folder, stem, importer) for every candidate plugin module, in search order."""
    package = importlib.import_module(package_name)
    folder = Path(package.__path__[0])
    for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        yield folder, info.name, functools.partial(
            importlib.import_module, f"{package_name}.{info.name}")
    for extra in filter(None, os.environ.get(PLUGIN_PATH_VARIABLE, "").split(os.pathsep)):
        folder = Path(extra) / package_name
        for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
            yield folder, info.name, functools.partial(_import_external, folder, package_name,
                                                       info.name)


def discover(kind: str) -> dict[str, Plugin]:
    """Every plugin of `kind`, by name. A module that fails to import is kept with its error.
    In a process that runs cells with isolated defenses, the defenses are not imported here:
    their declarations come from a child (benchmark.defense_catalog)."""
    from . import defense_catalog

    return _discover(kind, kind == "defense" and defense_catalog.wanted())


def forget() -> None:
    """Discover again on the next call (the plugin folders or files changed)."""
    _discover.cache_clear()


@functools.cache
def _discover(kind: str, declared_by_child: bool) -> dict[str, Plugin]:
    if declared_by_child:
        from . import defense_catalog

        return defense_catalog.plugins()
    package_name, spec_type = KINDS[kind]
    found: dict[str, Plugin] = {}
    for folder, stem, load in _module_sources(package_name):
        if stem.startswith("_"):
            continue
        path = folder / f"{stem}.py"
        try:
            module = load()
        except Exception as error:  # a broken plugin must not break discovery
            name = stem.replace("_", "-")
            found[name] = Plugin(name, None, path, f"{type(error).__name__}: {error}")
            continue
        spec = getattr(module, kind, None)
        if isinstance(spec, spec_type):
            found[spec.name] = Plugin(spec.name, spec, Path(inspect.getfile(module)))
    return found


def names(kind: str) -> list[str]:
    """The listed plugin names of `kind` (importable ones, templates hidden)."""
    return [name for name, plugin in discover(kind).items()
            if plugin.error is None and name not in HIDDEN]


def lookup(kind: str, name: str) -> Plugin:
    plugins = discover(kind)
    if name not in plugins:
        raise UsageError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(names(kind))}"
                         f" (see `python -m benchmark list {kind}s`)")
    plugin = plugins[name]
    if plugin.error:
        raise UsageError(f"{kind} {name!r} failed to import from {plugin.path}: {plugin.error}")
    return plugin


def file_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --- names with options -------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(kind: str, name: str, key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if default is None:
            for convert in (int, float):
                try:
                    return convert(text)
                except ValueError:
                    pass
        return text
    except ValueError:
        raise UsageError(f"{kind} {name!r}: option {key}={text!r} is not a valid "
                         f"{type(default).__name__} (default {default!r})") from None


def parse_options(kind: str, name: str, defaults: dict[str, Any], text: str) -> dict[str, Any]:
    """`text` is 'key=value,key=value'; returns the defaults updated and typed."""
    options = dict(defaults)
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(f"{kind} {name!r}: malformed option {item!r}; write key=value, "
                             f"e.g. {name}:{next(iter(defaults), 'key')}=...")
        if key not in defaults:
            known = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
            raise UsageError(f"{kind} {name!r} has no option {key!r}; its options: {known}")
        options[key] = _coerce(kind, name, key, value.strip(), defaults[key])
    return options


@dataclass(frozen=True)
class Component:
    """One plugin with resolved options."""
    plugin: Plugin
    options: dict[str, Any]

    @property
    def spec(self):
        return self.plugin.spec

    @property
    def label(self) -> str:
        """Canonical name: options that differ from the defaults, sorted."""
        changed = {k: v for k, v in sorted(self.options.items()) if v != self.spec.options[k]}
        suffix = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                          for k, v in changed.items())
        return f"{self.spec.name}:{suffix}" if suffix else self.spec.name


COMPOSE = r"\+(?=\s*[A-Za-z_])"  # the '+' of `pre+rule`, not the '+' of a number such as 1e+30


def resolve(kind: str, text: str) -> list[Component]:
    """Parse 'name[:options][+name[:options]...]' into components, validating names and options."""
    if not text or not text.strip():
        raise UsageError(f"empty {kind} name; known {kind}s: {', '.join(names(kind))}")
    parts = re.split(COMPOSE, text)
    if kind != "defense" and len(parts) > 1:
        raise UsageError(f"{kind} {text!r}: only defenses compose with '+'")
    components = []
    for part in parts:
        name, _, option_text = part.strip().partition(":")
        plugin = lookup(kind, name.strip())
        components.append(Component(plugin, parse_options(kind, name, plugin.spec.options,
                                                          option_text)))
    if kind == "defense":
        *pre, rule = components
        for component in pre:
            if not component.spec.preaggregator:
                raise UsageError(f"defense {text!r}: {component.spec.name!r} is not a "
                                 "pre-aggregator, so it cannot stand before '+'")
        if rule.spec.preaggregator:
            raise UsageError(f"defense {text!r}: {rule.spec.name!r} is a pre-aggregator; "
                             f"follow it with a rule, e.g. {rule.spec.name}+median")
    return components


def label(components: list[Component]) -> str:
    return "+".join(component.label for component in components)

