"""validate's report of what a change takes away from the committed results: deleted
cells (an error while the cell counted on the board: deleting it drops its whole group
from the ranking), the groups a deletion leaves incomplete, deleted files of a cell still
present, and replaced cells (an error when the numbers differ under the same behaviour
versions; see benchmark.result_history)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from leaderboard import collect

from .. import result_history, store
from ..config import RunConfig


def _judge_before(change, root: Path, profiles, facts):
    """The result a deleted cell was on the board (collect.Result) or why it did not count."""
    record = change.before
    values = record.get("config") if isinstance(record, dict) else None
    if not isinstance(values, dict):
        return None, "its run.json is unreadable at the base commit"
    profile = profiles.get(values.get("profile"))
    if profile is None:
        return None, f"profile {values.get('profile')} is not on the board"
    try:
        config = RunConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        return None, f"its config does not load ({error})"
    return collect.judged(root / change.folder, record, config, profile, facts)


def problems(root: Path, given: str, base: str, deleted, replaced, whole,
             profiles) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the cells deleted or replaced since `base`, and the groups a
    deletion leaves incomplete."""
    errors, warnings, lost = [], [], defaultdict(int)
    for change in deleted:
        restore = f"restore it with `git checkout {base} -- {given}/{change.folder}`"
        if (root / change.folder / "run.json").exists():
            errors += [f"{change.folder}/{name}: deleted since {base}: restore it with "
                       f"`git checkout {base} -- {given}/{change.folder}/{name}`"
                       for name in change.files]
            continue
        result, why = _judge_before(change, root, profiles, whole.facts)
        if result is None:
            warnings.append(f"{change.folder}: deleted since {base}; it did not count ({why})")
            continue
        errors.append(f"{change.folder}: deleted since {base}: a result on the board is "
                      f"never removed (its group leaves the ranking); {restore}")
        lost[result.record["config"]["profile"], collect.group_key(result)] += 1
    present = defaultdict(set)
    for result in whole.sound:
        present[collect.group_key(result)].add(result.record["config_hash"])
    for (profile, group), count in sorted(lost.items(), key=repr):
        task, defense, _, setting = group
        expected = {key for key, label in whole.facts.cells(profile, defense, task).items()
                    if collect.setting_of(label) == setting}
        missing = expected - present[group]
        if missing:
            where = ", ".join(f"{key} {value}" for key, value in setting if key != "task")
            errors.append(f"{defense} on {task} ({where}): incomplete after {count} "
                          f"deletion(s): {len(missing)} of its {len(expected)} cells missing, "
                          "so it leaves that setting's ranking")
    for change in replaced:
        now, _ = store.check_run(root / change.folder, full=False)
        if now is None:
            continue  # the folder's own check says why
        kind, text = result_history.replacement_problem(change.before, now)
        fix = (f": restore it with `git checkout {base} -- {given}/{change.folder}`"
               if kind == "error" else "")
        (errors if kind == "error" else warnings).append(
            f"{change.folder}: {text} since {base}{fix}")
    return errors, warnings
