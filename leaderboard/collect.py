"""Which stored results enter the leaderboard, and why the others do not.

A result folder enters if, in this order of checks, it
  1. has a readable run.json that passes its schema          (else "malformed")
  2. was run under the leaderboard's profile                 (else "profile quick ...")
  3. is unchanged since its run (files and record sealed, and
     its summary is what its files give)                     (else "hand-edited")
  4. names a defense, attack and task registered in the tree (else "not registered")
  5. ran with the behaviour versions now in the tree          (else "stale")
  6. is a cell of the profile as it is now                   (else "not a cell of")
  7. is the only result of its cell, in its own folder       (else "duplicate"/"misplaced")
and its group (task, placement, f and any grid value, defense) is complete: every attack
and seed the profile expects of it is present (else "incomplete"). The coverage (cells
present / expected) is counted per task and setting.

Checks 1 to 3 read the files only; 4 to 6 and the completeness take what the plugins say of
the names found from a child process (`benchmark.plugin_facts`): no plugin module is
imported into the process that checks the results.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import behaviour, matrix, plugin_facts, store, summary_check
from benchmark.api import UsageError
from benchmark.config import RunConfig

NON_LEADERBOARD_PROFILES = ("quick", "smoke", "adhoc")
BASELINE_ATTACK = plugin_facts.BASELINE_ATTACK
NOT_SETTING = ("defense", "attack", "seed", "n")  # label keys that do not define a setting


@dataclass
class Result:
    """A usable result: one cell of the profile."""
    folder: Path
    record: dict
    label: dict               # the profile's label of this cell (task, attack, f, ...)
    evaluation_rows: list[tuple[int, float]] | None = None  # read from eval.csv when asked
    config: RunConfig | None = None   # the record's config, loaded once

    def evaluations(self) -> list[tuple[int, float]]:
        """(step, test accuracy) of each evaluation, in order (eval.csv)."""
        if self.evaluation_rows is None:
            self.evaluation_rows = read_evaluations(self.folder / "eval.csv")
        return self.evaluation_rows

    @property
    def setting(self) -> tuple:
        return setting_of(self.label)

    @property
    def is_baseline(self) -> bool:
        return self.label["attack"] == BASELINE_ATTACK


@dataclass(frozen=True)
class Exclusion:
    where: str                # "task/defense" (or a file name)
    reason: str
    count: int
    example: str              # one folder, relative to the results root


@dataclass
class Collection:
    results: list[Result] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # excluded folder -> why
    sound: list[Result] = field(default_factory=list)  # results before the completeness check
    coverage: dict[tuple, list[int]] = field(default_factory=dict)  # (task, setting) ->
    # [cells present, cells expected]
    facts: plugin_facts.Facts | None = None  # what the plugins say of the names judged


def read_evaluations(path: Path) -> list[tuple[int, float]]:
    """eval.csv's (step, accuracy) pairs; parsed by hand: pandas costs a millisecond a file."""
    lines = path.read_text().split("\n")
    if not lines or not lines[0]:
        return []
    header = lines[0].split(",")
    step, accuracy = header.index("step"), header.index("accuracy")
    rows = []
    for line in lines[1:]:
        if line:
            values = line.split(",")
            rows.append((int(values[step]), float(values[accuracy])))
    return rows


def setting_of(label: dict) -> tuple:
    return tuple((key, value) for key, value in label.items() if key not in NOT_SETTING)


def _sealed(folder: Path, profile: matrix.Profile) -> tuple[tuple[dict, RunConfig] | None, str]:
    """((run.json, its config), "") or (None, why the folder is excluded): the checks that
    need nothing from the plugins."""
    record, problem = store.check_run(folder, full=False)  # `validate` checks the schema
    if record is None:
        return None, f"malformed: {problem}"
    config_values = record["config"]
    if config_values["profile"] != profile.name:
        kind = ("never enter the leaderboard" if config_values["profile"]
                in NON_LEADERBOARD_PROFILES else f"are not the {profile.name} leaderboard's")
        return None, f"profile {config_values['profile']}: its results {kind}"
    problem = store.seal_problem(folder, record) or summary_check.summary_problem(folder, record)
    if problem:
        return None, f"hand-edited: {problem}"
    try:
        config = RunConfig.from_dict(config_values)
    except (TypeError, ValueError) as error:
        return None, f"malformed: its config does not load ({error})"
    if config.hash() != record["config_hash"]:
        return None, "hand-edited: config_hash does not match its config"
    return (record, config), ""


def judged(folder: Path, record: dict, config: RunConfig, profile: matrix.Profile,
            facts: plugin_facts.Facts) -> tuple[Result | None, str]:
    """(the usable result, "") or (None, why the folder is excluded), by what the plugins
    of the tree say of its names."""
    try:  # resolves the three names: an unknown one raises
        versions = facts.versions_of(config.defense, config.attack, config.task)
    except UsageError as error:
        return None, f"not registered in this tree: {error}"
    stale = behaviour.stale_reason(record, versions)
    if stale:
        return None, stale
    if config.task not in profile.tasks:
        return None, (f"task {config.task}: the board shows it from another profile's "
                      "results (see BOARDS in leaderboard/__init__.py)")
    try:
        expected = facts.cells(profile.name, config.defense, config.task)
    except UsageError as error:
        return None, f"the {profile.name} profile cannot expand it: {error}"
    label = expected.get(config.hash())
    if label is None:
        return None, (f"not a cell of the current {profile.name} profile (its settings, "
                      "f, seed or attack differ from the profile's)")
    return Result(folder, record, dict(label), config=config), ""


def _relative(folder: Path, root: Path) -> str:
    try:
        return folder.relative_to(root).as_posix()
    except ValueError:
        return folder.as_posix()


def _where(folder: Path, root: Path) -> str:
    parts = Path(_relative(folder, root)).parts
    return "/".join(parts[1:3]) if len(parts) >= 3 else "/".join(parts)


def _dedupe(results: list[Result], roots: tuple[Path, ...], exclude) -> list[Result]:
    """One result per cell, at the path `run` gives it under one of `roots` (the first
    names it in the reasons)."""
    by_hash: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_hash[result.record["config_hash"]].append(result)
    root = roots[0]
    kept = []
    for key in sorted(by_hash):
        group = by_hash[key]
        home = store.cell_dir(root, group[0].config)
        homes = {store.cell_dir(each, group[0].config) for each in roots}
        canonical = [r for r in group if r.folder in homes]
        for result in group:
            if canonical and result is canonical[0]:
                kept.append(result)
            elif canonical:
                exclude(result.folder, "duplicate: a copy of a cell stored at "
                                       f"{_relative(home, root)}")
            else:
                exclude(result.folder, "misplaced: a cell must be stored at "
                                       f"{_relative(home, root)}")
    return kept


def group_key(result: Result) -> tuple:
    config = result.record["config"]
    return config["task"], config["defense"], result.is_baseline, result.setting


def _complete(results: list[Result], profile: matrix.Profile, facts: plugin_facts.Facts,
              exclude) -> tuple[list[Result], dict]:
    """Keeps the groups (task, defense, setting) that have every cell the profile expects
    of them, every seed of every attack: a defense is ranked in a setting only on its whole
    matrix there, so no one picks which runs count. Returns the kept results and the
    coverage: (task, setting) -> [cells present, cells expected], over every defense the
    profile lists and those with results."""
    present: dict[tuple, set[str]] = defaultdict(set)
    for result in results:
        present[group_key(result)].add(result.record["config_hash"])
    expected: dict[tuple, set[str]] = defaultdict(set)
    defenses = {key[:2] for key in present}
    for task in profile.tasks:
        defenses |= {(task, name) for name in facts.listed[profile.name]}
    for task, defense in sorted(defenses):
        for key, label in facts.cells(profile.name, defense, task).items():
            expected[task, defense, label["attack"] == BASELINE_ATTACK,
                     setting_of(label)].add(key)
    coverage: dict[tuple, list[int]] = {}
    for group, keys in expected.items():
        counts = coverage.setdefault((group[0], group[3]), [0, 0])
        counts[0] += len(keys & present.get(group, set()))
        counts[1] += len(keys)
    kept = []
    for result in results:
        group = group_key(result)
        missing = len(expected[group] - present[group])
        if missing:
            exclude(result.folder, f"incomplete matrix: its group (defense, task, placement, "
                                   f"f) lacks {missing} of its {len(expected[group])} cells")
        else:
            kept.append(result)
    return kept, coverage


def collect_many(root: Path | str, profiles: list[matrix.Profile],
                 also: list[dict] = ()) -> Collection:
    """The usable results under root/<profile>/ for each profile (their tasks do not
    overlap), as one collection: see `collect`. The plugin facts of the collection also
    cover the names of the run records `also` (e.g. of deleted cells)."""
    root = Path(root)
    return _collect((root,), [(profile, list(store.cell_folders(root / profile.name)))
                              for profile in profiles], also)


def collect(root: Path | str, profile: matrix.Profile,
            folders: list[Path] | None = None) -> Collection:
    """The usable results under root/<profile>/ (or among `folders`), and the exclusions,
    grouped by (task/defense, reason), sorted: the same files give the same collection."""
    root = Path(root)
    if folders is None:
        folders = list(store.cell_folders(root / profile.name))
    return _collect((root,), [(profile, folders)])


def collect_local(root: Path | str, profile: matrix.Profile, scratch: Path | str,
                  configs: list[RunConfig]) -> Collection:
    """`collect` of root/<profile>/<task>/ for the profile's tasks, with the cells `configs`
    (one defense's slice of the profile) read from the results root `scratch` instead:
    root's copies of those cells are left out, so a local copy takes their place, and
    scratch's other folders are ignored. Both roots are only read, and must not lie one
    inside the other. A scratch folder excluded is named in `reasons` by its path as
    `store.cell_dir(scratch, config)` gives it (with scratch in front)."""
    root, scratch = Path(root), Path(scratch)
    replaced = {store.cell_dir(root, config) for config in configs}
    folders = [folder for task in profile.tasks
               for folder in store.cell_folders(root / profile.name / task)
               if folder not in replaced]
    folders += [folder for folder in (store.cell_dir(scratch, config) for config in configs)
                if (folder / "run.json").is_file()]
    return _collect((root, scratch), [(profile, folders)])


def _configs(records: list[dict]) -> list[RunConfig]:
    configs = []
    for record in records:
        try:
            configs.append(RunConfig.from_dict(record["config"]))
        except (KeyError, TypeError, ValueError):
            pass  # nothing to ask about a config that does not load
    return configs


def _collect(roots: tuple[Path, ...], work: list[tuple[matrix.Profile, list[Path]]],
             also: list[dict] = ()) -> Collection:
    """Reads and checks every folder first, then asks a child process once what the
    plugins say of the names found (`benchmark.plugin_facts`), then judges. The folders
    lie under `roots`: the first is the results root reasons are relative to."""
    root = roots[0]
    sealed, excluded = [], {profile.name: defaultdict(list) for profile, _ in work}

    def exclude(profile: matrix.Profile, folder: Path, reason: str) -> None:
        own = next((each for each in roots if folder.is_relative_to(each)), root)
        excluded[profile.name][_where(folder, own), reason].append(_relative(folder, root))

    for profile, folders in work:
        for folder in sorted(folders):
            found, reason = _sealed(folder, profile)
            if found is None:
                exclude(profile, folder, reason)
            else:
                sealed.append((profile, folder, *found))
    named = [(p, c) for p, _, _, c in sealed]
    by_name = {profile.name: profile for profile, _ in work}
    named += [(by_name[c.profile], c) for c in _configs(also) if c.profile in by_name]
    facts = plugin_facts.ask(
        [profile for profile, _ in work],
        versions={(c.defense, c.attack, c.task) for _, c in named},
        expected={(p.name, c.defense, c.task) for p, c in named if c.task in p.tasks})
    collections = []
    for profile, _ in work:
        usable = []
        for owner, folder, record, config in sealed:
            if owner is profile:
                result, reason = judged(folder, record, config, profile, facts)
                if result is None:
                    exclude(profile, folder, reason)
                else:
                    usable.append(result)
        mine = functools.partial(exclude, profile)
        sound = _dedupe(usable, roots, mine)
        usable, coverage = _complete(sound, profile, facts, mine)
        usable.sort(key=lambda r: r.folder.as_posix())
        found = excluded[profile.name]
        exclusions = [Exclusion(where, reason, len(paths), sorted(paths)[0])
                      for (where, reason), paths in sorted(found.items())]
        reasons = {path: reason for (_, reason), paths in found.items() for path in paths}
        collections.append(Collection(
            usable, exclusions, dict(sorted(reasons.items())), sound,
            dict(sorted(coverage.items(), key=lambda item: repr(item[0]))), facts))
    return merged(collections)


def merged(collections: list[Collection]) -> Collection:
    """Several profiles' collections as one (their tasks do not overlap)."""
    if len(collections) == 1:
        return collections[0]
    whole = Collection(facts=collections[0].facts)
    for part in collections:
        whole.results += part.results
        whole.exclusions += part.exclusions
        whole.reasons.update(part.reasons)
        whole.sound += part.sound
        whole.coverage.update(part.coverage)
    whole.results.sort(key=lambda r: r.folder.as_posix())
    whole.exclusions.sort(key=lambda e: (e.where, e.reason))
    whole.reasons = dict(sorted(whole.reasons.items()))
    return whole
