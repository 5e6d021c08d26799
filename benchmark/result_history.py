"""What a change takes away from the committed results: cell folders deleted since a
commit and cells whose files were replaced, each with the run.json it had there (read
from git). `validate` reports them: a deleted cell silently drops its whole group from the
ranking, and a cell re-run under the same behaviour versions must give the same numbers.
"""
from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import behaviour
from .api import UsageError

COMPARED = ("eval.csv", "trace.csv.gz")  # the files that hold a cell's numbers


@dataclass
class Change:
    folder: str               # relative to the results root
    files: list[str]          # the names deleted (or replaced) in it
    before: dict | None       # its run.json at the base commit (None if unreadable)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def _records(root: Path, base: str, folders: list[str]) -> dict[str, dict | None]:
    """Each folder's run.json at `base`, through one `git cat-file --batch`."""
    if not folders:
        return {}
    asked = "".join(f"{base}:./{folder}/run.json\n" for folder in folders).encode()
    output = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"], input=asked,
                            capture_output=True).stdout
    found, at = {}, 0
    for folder in folders:
        end = output.index(b"\n", at)
        header = output[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<name> missing"
            found[folder] = None
            continue
        size = int(header[2])
        try:
            found[folder] = json.loads(output[at:at + size])
        except ValueError:
            found[folder] = None
        at += size + 1
    return found


def changes(root: Path, base: str, skip) -> tuple[list[Change], list[Change]]:
    """(folders with files deleted since `base`, folders with files replaced), for files
    under `root` that `skip(relative path)` does not set aside."""
    listed = _git(root, "diff", "--name-status", "--no-renames", "--relative",
                  "--diff-filter=DM", base, "--", ".")
    if listed.returncode:
        raise UsageError(f"git cannot compare with {base!r}: {listed.stderr.strip()}")
    touched = {"D": defaultdict(list), "M": defaultdict(list)}
    for line in listed.stdout.splitlines():
        status, _, name = line.partition("\t")
        if name and not skip(name):
            folder, _, file = name.rpartition("/")
            touched[status[0]][folder].append(file)
    records = _records(root, base, sorted({*touched["D"], *touched["M"]}))
    return tuple([Change(folder, sorted(files), records[folder])
                  for folder, files in sorted(touched[status].items())]
                 for status in "DM")


def replacement_problem(before: dict | None, now: dict) -> tuple[str, str]:
    """("error" or "warning", what replacing the cell's record `before` by `now` means)."""
    if before is None:
        return "warning", "its files were replaced (the earlier run.json is unreadable)"
    changed = behaviour.differences(behaviour.recorded(before), behaviour.recorded(now))
    if changed:
        return "warning", f"re-run under other behaviour versions ({'; '.join(changed)})"
    if any(before.get("files", {}).get(name) != now["files"].get(name) for name in COMPARED):
        return "error", ("replaced by other numbers under the same behaviour versions (a "
                         "re-run of an unchanged cell gives the same files)")
    return "warning", "re-run with the same numbers"
