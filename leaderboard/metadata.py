"""What the board says about a defense besides its numbers: each component's metadata
(description, citation, requirement, options) as registry discovery found it, and where
its links point: its paper (a Google Scholar search for the citation, since the plugins
carry no URLs), its source file (a path relative to the repository) and its page on the
site.

The metadata comes from the child process that discovered the plugins for `collect`
(`benchmark.plugin_facts`), installed by `use`: no plugin is imported here, so the board
stays a pure function of the results and the plugin metadata in the tree.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from benchmark import plugin_facts, registry

REPOSITORY = Path(__file__).resolve().parent.parent
SCHOLAR_SEARCH = "https://scholar.google.com/scholar?q="
FILE_NAME_SAFE = frozenset(string.ascii_letters + string.digits + ".-+")
PAGES_FOLDER = "defenses"  # the defense pages' folder in the site


@dataclass(frozen=True)
class Component:
    """One plugin of a defense's name (`nnm+trmean` has two), options left aside."""
    name: str
    description: str = ""
    reference: str = ""
    requirement: str = ""
    options: tuple[tuple[str, str], ...] = ()  # (option, default as written on the CLI)
    preaggregator: bool = False
    source: str | None = None  # its file relative to the repository; None outside it
    registered: bool = True
    server_data: bool = False  # it declares `server_gradient` (FLTrust's threat model)

    @property
    def paper_url(self) -> str | None:
        return SCHOLAR_SEARCH + quote_plus(self.reference) if self.reference else None


def name_parts(defense: str) -> list[str]:
    """The components of a defense's name with their options: `bucketing:s=2+krum` ->
    [`bucketing:s=2`, `krum`]."""
    return [part.strip() for part in re.split(registry.COMPOSE, defense)]


def plugin_name(part: str) -> str:
    """`krum:squared=false,m=n-f-2` -> `krum`."""
    return part.partition(":")[0].strip()


def source_path(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(REPOSITORY).as_posix()
    except ValueError:  # a plugin from BENCHMARK_PLUGINS: not part of the tree
        return None


_defenses: dict[str, dict] | None = None  # name -> metadata (plugin_facts.Facts.defenses)


def use(defenses: dict[str, dict]) -> None:
    """Takes the defenses' metadata from `defenses` (the collection's plugin facts)."""
    global _defenses
    _defenses = defenses


def component(name: str) -> Component:
    if _defenses is None:
        use(plugin_facts.ask([]).defenses)
    found = _defenses.get(name)
    if found is None:
        return Component(name, registered=False)
    return Component(name, found["description"], found["reference"], found["requirement"],
                     tuple(map(tuple, found["options"])), found["preaggregator"],
                     source_path(Path(found["path"])), server_data=found["server_data"])


def components(defense: str) -> list[Component]:
    return [component(plugin_name(part)) for part in name_parts(defense)]


def uses_server_data(defense: str) -> bool:
    """Whether a component of `defense` uses the server's own root data set (FLTrust's
    threat model): the board ranks such rules apart from the others."""
    return any(part.server_data for part in components(defense))


def page_file(defense: str) -> str:
    """A file name for the defense's page, safe on any file system and in a relative
    URL (a `:` would read as a URL scheme): bytes outside [A-Za-z0-9.+-] become _hh, so
    two names never share a file."""
    return "".join(chr(byte) if chr(byte) in FILE_NAME_SAFE else f"_{byte:02x}"
                   for byte in defense.encode()) + ".html"
