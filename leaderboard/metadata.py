"""What the board says about a defense besides its numbers: each component's metadata
(description, citation, requirement, options) as registry discovery found it, and where
its links point: its paper (a Google Scholar search for the citation, since the plugins
carry no URLs), its source file (a path relative to the repository) and its page on the
site.

Only the registry's discovery imports plugins (collect resolved every defense on the
board through it already): nothing here runs plugin code, so the board stays a pure
function of the results and the plugin metadata in the tree.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from benchmark import registry
from benchmark.api import UsageError

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


def _option_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def source_path(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(REPOSITORY).as_posix()
    except ValueError:  # a plugin from BENCHMARK_PLUGINS: not part of the tree
        return None


def component(name: str) -> Component:
    try:
        plugin = registry.lookup("defense", name)
    except UsageError:
        return Component(name, registered=False)
    spec = plugin.spec
    return Component(name, spec.description, spec.reference, spec.requirement,
                     tuple((key, _option_text(value)) for key, value in spec.options.items()),
                     spec.preaggregator, source_path(plugin.path))


def components(defense: str) -> list[Component]:
    return [component(plugin_name(part)) for part in name_parts(defense)]


def page_file(defense: str) -> str:
    """A file name for the defense's page, safe on any file system and in a relative
    URL (a `:` would read as a URL scheme): bytes outside [A-Za-z0-9.+-] become _hh, so
    two names never share a file."""
    return "".join(chr(byte) if chr(byte) in FILE_NAME_SAFE else f"_{byte:02x}"
                   for byte in defense.encode()) + ".html"
