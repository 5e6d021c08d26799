"""Where a result came from: code hashes, package versions, git state, device."""
from __future__ import annotations

import ast
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from . import registry

HARNESS_DIR = Path(__file__).resolve().parent
REPO_DIR = HARNESS_DIR.parent
PACKAGES = ("torch", "numpy", "pandas", "scikit-learn")


def _imported_files(path: Path, packages: tuple[Path, ...]) -> set[Path]:
    """`path` and the modules of `packages` it imports, transitively (read from the source)."""
    names = {package.name for package in packages}
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen or not current.exists():
            continue
        seen.add(current)
        stat = current.stat()
        for target in _imports_in(current, stat.st_mtime_ns, stat.st_size):
            parts = target.split(".")
            if parts[0] in names:
                module = REPO_DIR.joinpath(*parts)
                todo += [module.with_suffix(".py"), module / "__init__.py"]
    return seen


@functools.lru_cache(maxsize=4096)
def _imports_in(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The module names one source file imports. Parsed once per version of the file (its
    modification time and size are part of the key): parsing every plugin file again for
    each cell took about a quarter of a digits cell."""
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the current module's folder
                folder = path.parents[node.level - 1]
                prefix = folder.relative_to(REPO_DIR).parts
                base = ".".join([*prefix, *filter(None, [node.module])])
            targets += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
    return tuple(targets)


@functools.cache
def harness_hash() -> str:
    """Hash of the harness sources a run executes: benchmark/cells.py and what it imports."""
    return registry.file_hash(sorted(_imported_files(HARNESS_DIR / "cells.py", (HARNESS_DIR,))))


def plugins_hash(paths: list[Path]) -> str:
    """Hash of plugin files and what they import from their own folder and the harness."""
    files = set()
    for path in paths:
        files |= _imported_files(path, (path.parent, HARNESS_DIR))
    return registry.file_hash(sorted(files))


def code_hashes(config) -> dict[str, str]:
    (attack,) = registry.resolve("attack", config.attack)
    hashes = {
        "defense": plugins_hash([c.plugin.path for c in registry.resolve("defense",
                                                                         config.defense)]),
        "attack": plugins_hash([attack.plugin.path]),
        "task": plugins_hash([registry.lookup("task", config.task).path]),
        "harness": harness_hash(),
    }
    if config.servers > 1:  # replicated servers: the model rules and the server attack too
        rules = [c.plugin.path for key in ("gather_rule", "pull_rule")
                 for c in registry.resolve("defense", getattr(config, key))]
        (server_attack,) = registry.resolve("server_attack", config.server_attack)
        hashes["model_rules"] = plugins_hash(rules)
        hashes["server_attack"] = plugins_hash([server_attack.plugin.path])
    return hashes


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@functools.cache
def git_state() -> dict[str, object]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True,
                              timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return (f"{platform.machine()} {platform.processor() or 'cpu'} "
            f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} thread(s)")
