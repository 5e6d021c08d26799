"""Matrix profiles (data files in benchmark/profiles/) and the cells they expand to.

A profile lists tasks, attacks, placements, f values and seeds, plus settings:
    defenses = [...]    the defenses of a whole-profile run (`run` without --defense);
                        "*": every registered rule
    compositions = [...]  pre-aggregator compositions run and ranked as defenses of their
                        own (e.g. "nnm+trmean")
    smallest_f_only = [...]  defenses run only at each task's smallest f (e.g. bulyan)
    [settings]          RunConfig fields for every cell
    [task.<name>]       RunConfig fields for one task's cells, and optionally
                        `variants = [{...}, ...]`: setting sets, each its own cells
                        (e.g. the learning rates a paper compares on that task)
    [grid]              field = [values...]: every combination becomes its own cells
    [defense_options]   <defense> = "options" appended to that defense's name
    [baseline]          an unattacked reference per task, variant, grid point, f and seed,
                        in whole-profile runs: `defense` (default average) over the n - f
                        honest workers alone (f = 0, attack none), momentum at `momentum_at`
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .api import UsageError
from .config import PLACEMENTS, RunConfig, make_config
from .plugins import check_config

PROFILE_DIR = Path(__file__).parent / "profiles"
ALL = "*"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    tasks: list[str]
    attacks: list[str]
    placements: list[str]
    seeds: list[int]
    f: list[int] | None = None
    defenses: list[str] | None = None
    compositions: list[str] = field(default_factory=list)
    smallest_f_only: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    task: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    defense_options: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str) -> Profile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.exists():
        raise UsageError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names())}")
    data = tomllib.loads(path.read_text())
    try:
        return Profile(name=name, **data)
    except TypeError as error:
        raise UsageError(f"profile {path}: {error}") from None


@dataclass
class Cell:
    config: RunConfig | None
    label: dict[str, Any]
    invalid: str | None = None      # why the plugins' checks reject this cell


def _choose(requested: list | None, available: list, what: str) -> list:
    if not requested:
        return available
    unknown = [item for item in requested if item not in available]
    if unknown:
        raise UsageError(f"{what} {unknown} not in this profile; it has: {available}")
    return [item for item in available if item in requested]


def profile_defenses(profile: Profile) -> list[str]:
    """The defenses a whole-profile run covers, with the profile's options applied."""
    if not profile.defenses:
        raise UsageError(f"profile {profile.name!r} lists no defenses: give --defense NAME")
    names = profile.defenses
    if ALL in names:
        names = [name for name in registry.names("defense")
                 if not registry.lookup("defense", name).spec.preaggregator]
    return [with_profile_options(profile, name) for name in [*names, *profile.compositions]]


def with_profile_options(profile: Profile, defense: str) -> str:
    name, _, options = defense.partition(":")
    if not options and "+" not in defense and name in profile.defense_options:
        return f"{name}:{profile.defense_options[name]}"
    return defense


def _label(profile: Profile, defense: str) -> str:
    return registry.label(registry.resolve("defense", with_profile_options(profile, defense)))


def _is_baseline_rule(profile: Profile, defense: str) -> bool:
    """Whether `defense` is the rule of the profile's unattacked baseline, whose slice then
    holds the baseline's cells too (as `validate` and the leaderboard expect of it)."""
    return bool(profile.baseline) and _label(profile, defense) == _label(
        profile, profile.baseline.get("defense", "average"))


def _listed(profile: Profile, defense: str) -> bool:
    """Whether a whole-profile run covers `defense` under attack."""
    return bool(profile.defenses) and _label(profile, defense) in {
        _label(profile, name) for name in profile_defenses(profile)}


def _variants(profile: Profile, task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the task's fixed settings, its variants: [{}] when it has none)."""
    settings = dict(profile.task.get(task, {}))
    variants = settings.pop("variants", None) or [{}]
    return settings, variants


def _variant_text(variant: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in variant.items())


def expand(profile: Profile, defense: str | None = None, *, tasks=None, attacks=None,
           placements=None, f_values=None, seeds=None, overrides: dict | None = None) -> list[Cell]:
    """The profile's cells for one defense (its slice, with the baseline's cells when it is
    the baseline's rule) or, with defense None, for the whole profile (its defenses and
    baseline), optionally narrowed; invalid cells are marked."""
    if defense is None:
        defense_list = profile_defenses(profile)
    elif _is_baseline_rule(profile, defense) and not _listed(profile, defense):
        defense_list = []  # the profile runs its baseline's rule unattacked only (paper)
    else:
        defense_list = [with_profile_options(profile, defense)]
    for name in defense_list:
        registry.resolve("defense", name)  # unknown names fail here, before anything runs
    profile_attacks = registry.names("attack") if ALL in profile.attacks else profile.attacks
    attack_list = list(attacks) if attacks else profile_attacks
    for attack in attack_list:
        registry.resolve("attack", attack)
    for placement in placements or []:
        if placement not in PLACEMENTS:
            raise UsageError(f"unknown placement {placement!r}; choose from {PLACEMENTS}")
    placement_list = _choose(placements, profile.placements, "placements")
    grid_keys = sorted(profile.grid)
    with_variants = any("variants" in table for table in profile.task.values())
    baseline = profile.baseline if defense is None or _is_baseline_rule(profile, defense) \
        else None
    cells = []
    invalid_because: dict[tuple, str | None] = {}  # the checks see only these fields

    def add(settings, label):
        config = make_config(**settings, profile=profile.name)
        label = {**label, "n": config.n, "defense": config.defense}  # canonical names
        if label["attack"] == settings["attack"]:
            label["attack"] = config.attack
        key = (config.defense, config.attack, config.n, config.f, config.byzantine,
               config.participants)
        if key not in invalid_because:
            try:
                check_config(config)
                invalid_because[key] = None
            except UsageError as reason:
                invalid_because[key] = str(reason)
        cells.append(Cell(config, label, invalid=invalid_because[key]))

    for task in list(tasks) if tasks else profile.tasks:
        task_defaults = registry.lookup("task", task).spec.defaults
        task_f = list(profile.f or task_defaults.get("f_values", (RunConfig.f,)))
        f_list = [f for f in task_f if not f_values or f in f_values]
        task_settings, variants = _variants(profile, task)
        for variant, combo in itertools.product(
                variants, itertools.product(*(profile.grid[key] for key in grid_keys))):
            settings = {**profile.settings, **task_settings, **variant,
                        **dict(zip(grid_keys, combo)), **(overrides or {}), "task": task}
            extra = {**dict(zip(grid_keys, combo)),
                     **({"variant": _variant_text(variant)} if with_variants else {})}
            for name, attack, placement, f, seed in itertools.product(
                    defense_list, attack_list, placement_list, f_list, seeds or profile.seeds):
                if name.partition(":")[0] in profile.smallest_f_only and f != min(task_f):
                    continue
                add({**settings, "defense": name, "attack": attack, "momentum_at": placement,
                     "f": f, "seed": seed},
                    {"task": task, "defense": name, "attack": attack, "momentum_at": placement,
                     "f": f, "seed": seed, **extra})
            if baseline is None or (attacks and "none" not in attacks):
                continue
            placement = baseline.get("momentum_at", "update")
            if placements and placement not in placements:
                continue
            base_defense = with_profile_options(profile, baseline.get("defense", "average"))
            n = settings.get("n", task_defaults.get("n", RunConfig.n))
            for f, seed in itertools.product(f_list, seeds or profile.seeds):
                add({**settings, "defense": base_defense, "attack": "none",
                     "momentum_at": placement, "n": n - f, "f": 0, "seed": seed},
                    {"task": task, "defense": base_defense, "attack": "none (baseline)",
                     "momentum_at": placement, "f": f, "seed": seed, **extra})
    return cells
