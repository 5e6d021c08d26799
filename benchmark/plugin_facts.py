"""What the checkers (`validate`, `leaderboard`) need to know about the plugins, learnt in
a child process.

Discovery imports every module of defenses/, attacks/, tasks/ and server_attacks/, and a
module runs whatever it likes when imported: a submitted `defenses/zz_helper.py` could
replace `benchmark.store.seal_problem` and switch the seal check off. So the checkers
never import a plugin: `ask` starts `python -m benchmark.plugin_facts`, which discovers
the plugins and answers one JSON request (stdin) with JSON (stdout):

    versions   the behaviour versions a (defense, attack, task) resolves to
    config_versions  the same for whole run configs (replicated servers' rules included),
               by config hash
    expected   the cells a profile expects of a (defense, task): config hash -> label
    listed     the defenses a whole-profile run covers, per profile (their cells are
               always in `expected`)
    defenses   each defense plugin's metadata (description, citation, options, source,
               whether it uses the server's own data)

Each answer is a value or the text of the UsageError it raised. The checkers take these as
the plugins' claims about themselves; every check of the stored files runs in the parent.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import behaviour, matrix, registry
from .api import UsageError
from .config import RunConfig

ROOT = Path(__file__).resolve().parent.parent  # the tree whose plugins are discovered
TIMEOUT = 1800  # seconds: expanding a whole profile takes tens of seconds


@dataclass
class Facts:
    versions: dict[tuple[str, str, str], dict | str] = field(default_factory=dict)
    expected: dict[tuple[str, str, str], dict[str, dict] | str] = field(default_factory=dict)
    listed: dict[str, list[str]] = field(default_factory=dict)
    defenses: dict[str, dict] = field(default_factory=dict)
    config_versions: dict[str, dict | str] = field(default_factory=dict)

    def versions_of(self, defense: str, attack: str, task: str) -> dict:
        """The current versions of a (defense, attack, task); raises UsageError if one of
        the names does not resolve. The harness version is the checker's own."""
        found = self.versions[defense, attack, task]
        if isinstance(found, str):
            raise UsageError(found)
        return {**found, "harness": behaviour.HARNESS}

    def versions_of_config(self, config) -> dict:
        """`versions_of` for a whole RunConfig asked about (`ask(configs=...)`), the
        replicated servers' rules and attack included; raises UsageError."""
        found = self.config_versions[config.hash()]
        if isinstance(found, str):
            raise UsageError(found)
        return {**found, "harness": behaviour.HARNESS}

    def cells(self, profile: str, defense: str, task: str) -> dict[str, dict]:
        """{config hash: label} of every valid cell `profile` expects of `defense` on
        `task`; raises UsageError if the profile cannot expand it."""
        found = self.expected[profile, defense, task]
        if isinstance(found, str):
            raise UsageError(found)
        return found


_answers: dict[str, Facts] = {}  # fingerprint of the request and the code -> facts


def _fingerprint(request: dict) -> str:
    """A digest of the request, the plugin search path and the bytes of every source and
    data file discovery reads: equal digests give equal answers, so a process asks once."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    extra = os.environ.get(registry.PLUGIN_PATH_VARIABLE, "")
    digest.update(f"{extra}\0{os.environ.get('PYTHONPATH', '')}\0".encode())
    folders = [ROOT / "benchmark", *(ROOT / folder for folder, _ in registry.KINDS.values())]
    folders += [Path(path) for path in extra.split(os.pathsep) if path]
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".py", ".toml", ".json") and path.is_file():
                digest.update(f"{path}\0{path.stat().st_size}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def ask(profiles, versions=(), expected=(), configs=()) -> Facts:
    """Facts about the plugins of this tree for `profiles` (matrix.Profile objects), the
    (defense, attack, task) triples `versions`, the (profile name, defense, task)
    triples `expected` and the RunConfigs `configs`, from a child process (once per
    process for the same request and the same files). Raises UsageError if the child
    fails."""
    request = {"profiles": [dataclasses.asdict(profile) for profile in profiles],
               "versions": sorted(set(versions)), "expected": sorted(set(expected)),
               "configs": sorted({config.hash(): config.to_dict()
                                  for config in configs}.items())}
    key = _fingerprint(request)
    if key not in _answers:
        _answers[key] = _ask_child(request)
    return copy.deepcopy(_answers[key])


def _ask_child(request: dict) -> Facts:
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}
    try:
        child = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(request),
                               capture_output=True, text=True, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UsageError(f"plugin discovery took over {TIMEOUT} s in its child process: a "
                         "plugin module hangs when imported; fix or remove it") from None
    try:
        answer = None if child.returncode else json.loads(child.stdout)
    except ValueError:
        answer = None
    if answer is None:
        tail = "\n".join(child.stderr.strip().splitlines()[-15:])
        raise UsageError(f"plugin discovery failed in its child process (exit code "
                         f"{child.returncode}, no answer): a plugin module ends or breaks the "
                         f"process when imported; fix or remove it. Its output:\n{tail}")
    return Facts({tuple(key): value for key, value in answer["versions"]},
                 {tuple(key): value for key, value in answer["expected"]},
                 answer["listed"], answer["defenses"], dict(answer["config_versions"]))


# --- the child ---------------------------------------------------------------------------

BASELINE_ATTACK = "none (baseline)"  # the label matrix.expand gives a baseline cell


class ProfileCells:
    """The cells `profile` expects, per defense and task (expanded once, then cached)."""

    def __init__(self, profile):
        self.profile = profile
        self._cache: dict[tuple[str, str], dict] = {}
        self._baselines: dict[str, dict] = {}

    def _baseline_cells(self, task: str) -> dict:
        if task not in self._baselines:
            cells = []
            if getattr(self.profile, "baseline", None) and getattr(self.profile, "defenses", None):
                cells = matrix.expand(self.profile, None, tasks=[task], attacks=["none"])
            self._baselines[task] = {cell.config.hash(): cell for cell in cells
                                     if cell.invalid is None
                                     and cell.label["attack"] == BASELINE_ATTACK}
        return self._baselines[task]

    def listed_defenses(self) -> list[str]:
        """The defenses a whole-profile run covers (none if the profile lists none)."""
        if not getattr(self.profile, "defenses", None):
            return []
        return matrix.profile_defenses(self.profile)

    def expected(self, defense: str, task: str) -> dict:
        """Every valid cell for `defense` on `task`, by config hash (with the baseline's
        when `defense` is the profile's baseline rule; only those when the profile lists
        its defenses and not this one, as `paper` with its unattacked average).
        Raises UsageError."""
        if (defense, task) not in self._cache:
            baseline = {key: cell for key, cell in self._baseline_cells(task).items()
                        if cell.config.defense == defense}
            listed = {registry.label(registry.resolve("defense", name))
                      for name in self.listed_defenses()}
            expected = {}
            if not (baseline and listed and defense not in listed):
                cells = matrix.expand(self.profile, defense, tasks=[task])
                expected = {cell.config.hash(): cell for cell in cells if cell.invalid is None}
            expected.update(baseline)
            self._cache[defense, task] = expected
        return self._cache[defense, task]


def _guarded(compute):
    try:
        return compute()
    except UsageError as error:
        return str(error)


def _expected(cells, defense: str, task: str) -> dict[str, dict]:
    return {key: cell.label for key, cell in cells.expected(defense, task).items()}


def _defense_metadata(plugin) -> dict:
    spec = plugin.spec
    options = [[key, str(value).lower() if isinstance(value, bool) else str(value)]
               for key, value in spec.options.items()]
    return {"description": spec.description, "reference": spec.reference,
            "requirement": spec.requirement, "options": options,
            "preaggregator": spec.preaggregator, "server_data": spec.server_gradient,
            "path": str(plugin.path)}


def answer(request: dict) -> dict:
    from . import registry

    profiles = {data["name"]: ProfileCells(matrix.Profile(**data)) for data in request["profiles"]}
    listed = {name: cells.listed_defenses() for name, cells in profiles.items()}
    wanted = {tuple(key) for key in request["expected"]}
    wanted |= {(name, defense, task) for name, cells in profiles.items()
               for defense in listed[name] for task in cells.profile.tasks}
    expected = [[key, _guarded(lambda: _expected(profiles[key[0]], *key[1:]))]
                for key in sorted(wanted)]
    versions = [[key, _guarded(lambda: behaviour.versions(*key))]
                for key in map(tuple, request["versions"])]
    config_versions = [[key, _guarded(lambda: behaviour.of_config(RunConfig.from_dict(values)))]
                       for key, values in request.get("configs", [])]
    defenses = {name: _defense_metadata(plugin)
                for name, plugin in registry.discover("defense").items() if plugin.error is None}
    return {"versions": versions, "expected": expected, "listed": listed, "defenses": defenses,
            "config_versions": config_versions}


def main() -> None:
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what plugins print is not the answer
    json.dump(answer(json.loads(sys.stdin.read())), reply)
    reply.close()


if __name__ == "__main__":
    main()
