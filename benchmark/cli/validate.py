"""`validate`: check the results a pull request adds before they reach the leaderboard."""
from __future__ import annotations

import socket
import subprocess
from collections import defaultdict
from pathlib import Path

from .. import dask_executor, matrix, result_history, store
from ..api import UsageError
from ._common import add_results_location


def register(commands) -> None:
    parser = commands.add_parser(
        "validate", help="check results a pull request adds (schema, seal, versions, matrix)",
        description="Check result folders before they are committed: run.json passes its "
                    "schema, files and record are unchanged since the run, the defense, attack "
                    "and task are registered, they ran with the behaviour versions of this tree, "
                    "the cell belongs to the profile, no duplicates, no quick/adhoc results, "
                    "and every (defense, task) submitted has its whole matrix. Exit 1 on any "
                    "problem.")
    add_results_location(parser)
    parser.add_argument("--base", metavar="GIT_REF",
                        help="check only what changed since this commit (e.g. origin/main), "
                             "and what was deleted or replaced since; default: every file "
                             "git would commit under --results, and what was deleted or "
                             "replaced since HEAD")
    parser.set_defaults(handler=main)


def _git_files(root: Path, base: str | None) -> list[str] | None:
    """Files under `root` (relative to it) that git tracks or would add, or that changed
    since `base`; None when `root` is not in a git work tree."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)

    if git("rev-parse", "--is-inside-work-tree").returncode:
        if base:
            raise UsageError(f"--base needs {root} inside a git work tree")
        return None
    if base:
        changed = git("diff", "--name-only", "--relative", "--diff-filter=d", base, "--", ".")
        if changed.returncode:
            raise UsageError(f"git cannot compare with {base!r}: {changed.stderr.strip()}")
        listed = changed.stdout.split("\n")
    else:
        listed = git("ls-files", "--", ".").stdout.split("\n")
    listed += git("ls-files", "--others", "--exclude-standard", "--", ".").stdout.split("\n")
    return sorted({name for name in listed if name and (root / name).exists()})


def changed_folders(root: Path, base: str) -> list[Path]:
    """The cell folders under `root` with files changed since the commit `base`."""
    return _candidates(root, base)[0]


def _candidates(root: Path, base: str | None) -> tuple[list[Path], list[str], set[Path]]:
    """(cell folders to check, files that belong to no cell folder, what interrupted or
    running runs leave: temporary folders and Dask mark files)."""
    files = _git_files(root, base)
    if files is None:
        files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                       if path.is_file())
    folders, stray, leftovers = set(), [], set()
    for name in files:
        path = root / name
        if path.parts[len(root.parts)] == "kernels" or path.name == ".gitignore":
            continue
        temporary = next((parent for parent in path.relative_to(root).parents
                          if parent.name.startswith(store.TEMP_PREFIX)), None)
        if temporary is not None:
            leftovers.add(root / temporary)
        elif path.parent == root and path.name.startswith(dask_executor.SHARED_MARK):
            leftovers.add(path)
        elif (path.parent / "run.json").exists():
            folders.add(path.parent)
        else:
            stray.append(name)
    return sorted(folders), stray, leftovers


def _not_a_result(name: str) -> bool:
    """Files under the results root that are no cell's: kernel timings, git's ignore list,
    what interrupted or running runs leave."""
    parts = name.split("/")
    return (parts[0] == "kernels" or parts[-1] == ".gitignore"
            or any(part.startswith(store.TEMP_PREFIX) for part in parts)
            or parts[0].startswith(dask_executor.SHARED_MARK))


def _changes(root: Path, base: str | None):
    """(deleted, replaced) since `base` (HEAD by default; nothing outside git)."""
    if base is None:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
                              capture_output=True)
        if head.returncode:
            return [], []
        base = "HEAD"
    return result_history.changes(root, base, _not_a_result)


def _leftover_problem(path: Path) -> tuple[str, str]:
    """("error" or "warning", what `path` is and what to do), for a temporary folder or a
    Dask mark file: neither is a result, and neither should be committed."""
    if path.name.startswith(dask_executor.SHARED_MARK):
        owner = dask_executor.mark_owner(path)
        if owner is None:
            return "error", ("the mark file of a Dask run (it does not say which process "
                             "wrote it): delete it unless a `run` on this folder is going on")
        host, pid = owner
        if dask_executor.mark_is_stale(path):
            return "error", (f"the mark file of a Dask run that is gone (process {pid} on "
                             f"{host}): delete it (the next `run` here removes it too)")
        if host != socket.gethostname():
            return "error", (f"the mark file of a Dask run started on {host} (process "
                             f"{pid}): delete it unless that run is still going")
        return "warning", (f"the mark file of a Dask run in progress (process {pid}): "
                           "validate again when it ends")
    pid = store.temp_dir_pid(path)
    if pid is not None and store.process_exists(pid):
        return "warning", (f"the temporary folder of a run in progress (process {pid}): "
                           "validate again when it ends")
    gone = f" (process {pid} is gone)" if pid is not None else ""
    return "error", (f"a temporary folder left by an interrupted run{gone}: delete it (the "
                     "next `run` of its cell removes it too); it is not a result")


def main(args) -> int:
    from leaderboard import BOARDS, REPRODUCED, SECTIONS, board_profiles, collect, kernels

    from . import _history

    root = Path(args.results)
    if not root.is_dir():
        raise UsageError(f"no results folder {root}; give --results DIR")
    profiles = {p.name: p for p in board_profiles(args.profile or BOARDS)}
    if not args.profile:
        profiles |= {name: matrix.load_profile(name) for name in (*SECTIONS, *REPRODUCED)}
    folders, stray, leftovers = _candidates(root, args.base)
    errors = [f"{name}: not inside a cell folder (a folder with a run.json)" for name in stray]
    warnings = []
    for path in sorted(leftovers):
        kind, problem = _leftover_problem(path)
        (errors if kind == "error" else warnings).append(
            f"{path.relative_to(root).as_posix()}: {problem}")
    deleted, replaced = _changes(root, args.base)
    whole = collect.collect_many(root, list(profiles.values()),
                                 also=[change.before for change in deleted if change.before])
    history_errors, history_warnings = _history.problems(
        root, args.results, args.base or "HEAD", deleted, replaced, whole, profiles)
    errors += history_errors
    warnings += history_warnings
    usable = {result.folder: result for result in whole.results}
    submitted = set()
    for folder in folders:
        relative = folder.relative_to(root).as_posix()
        if folder.relative_to(root).parts[0] not in profiles:
            kept = ", ".join(f"results/{name}/" for name in profiles)
            errors.append(f"{relative}: not a result of the board's profiles; only {kept} "
                          "is committed (quick and adhoc results stay local)")
            continue
        if relative in whole.reasons:
            errors.append(f"{relative}: {whole.reasons[relative]}")
            continue
        result = usable[folder]
        config = result.record["config"]
        submitted.add((config["profile"], config["defense"], config["task"]))
        if result.record["status"] != "ok":
            warnings.append(f"{relative}: {result.record['status']} ({result.record['reason']}); "
                            "it scores 0")
    present = defaultdict(set)
    for result in whole.sound:
        config = result.record["config"]
        present[config["profile"], config["defense"], config["task"]].add(
            result.record["config_hash"])
    for name, defense, task in sorted(submitted):
        profile = profiles[name]
        if task not in profile.tasks:
            continue  # the board shows this task from an earlier profile
        expected = whole.facts.cells(name, defense, task)
        missing = sorted(set(expected) - present[name, defense, task])
        if missing:
            example = expected[missing[0]]
            errors.append(f"{defense} on {task}: {len(missing)} of {len(expected)} cells of the "
                          f"{name} matrix missing (e.g. {example}); run `python -m "
                          f"benchmark run --defense {defense} --profile {name} --task "
                          f"{task}` to complete it")
    _, kernel_problems = kernels.load(root)
    errors += [f"{name}: {reason}" for name, reason in kernel_problems]
    for line in warnings:
        print(f"warning: {line}")
    for line in errors:
        print(f"error: {line}")
    scope = f"changed since {args.base}" if args.base else "to commit"
    print(f"{len(folders)} result folder(s) {scope} checked: {len(errors)} error(s), "
          f"{len(warnings)} warning(s)")
    return 1 if errors else 0
