"""Behaviour versions: when a stored result stops being valid.

A result is valid while the code that produced it would still compute the same numbers.
Bytes do not decide that (a comment or a refactor changes bytes, not numbers): versions
do. The harness has one version, HARNESS; every defense, attack and task carries its own
(`version=` in its declaration, default 1). A run records the versions it ran with, and a
result is stale only when one of them differs from the code's. Golden tests
(tests/goldens.py) pin what each version computes: a change that alters a golden output
fails the suite until the matching version is bumped and the goldens are regenerated
(`python tests/goldens.py --update`).

Records written before versions existed (schema version 1) ran with version 1 of
everything: the behaviour the goldens were first taken from.
"""
from __future__ import annotations

import re

from . import registry

HARNESS = 1  # bump when the engine, metrics, sampling or gradients compute other numbers
KINDS = ("defense", "attack", "task")


def versions(defense: str, attack: str, task: str) -> dict:
    """{"harness": HARNESS, "defense": {component: version}, "attack": {...}, "task": {...}}
    for the plugins the names resolve to in this tree (UsageError if one is unknown)."""
    found = {"harness": HARNESS}
    for kind, text in zip(KINDS, (defense, attack, task)):
        if kind == "task":
            spec = registry.lookup("task", text).spec
            found[kind] = {spec.name: spec.version}
        else:
            found[kind] = {c.spec.name: c.spec.version for c in registry.resolve(kind, text)}
    return found


# with replicated servers (config servers > 1) the model rules and the server attack count
# too; a record without them (one server) is compared on KINDS only
SERVER_KINDS = {"server_attack": "server_attack", "gather_rule": "defense",
                "pull_rule": "defense"}


def of_config(config) -> dict:
    found = versions(config.defense, config.attack, config.task)
    if getattr(config, "servers", 1) > 1:
        for key, kind in SERVER_KINDS.items():
            found[key] = {c.spec.name: c.spec.version
                          for c in registry.resolve(kind, getattr(config, key))}
    return found


def _names(kind: str, text: str) -> list[str]:
    if kind == "task":
        return [text]
    parts = re.split(registry.COMPOSE, text)
    return [part.strip().partition(":")[0] for part in parts]


def recorded(record: dict) -> dict:
    """The versions a stored run ran with. A record older than versions (schema 1) counts
    as harness 0, so it is stale: of the 2,604 such digits cells, none of the 198 re-run
    (median's 168, two of each other defense's) gave back its stored eval.csv."""
    if "versions" in record:
        return record["versions"]
    config = record["config"]
    legacy = {"harness": 0}
    for kind in KINDS:
        legacy[kind] = {name: 1 for name in _names(kind, config[kind])}
    return legacy


def differences(stored: dict, current: dict) -> list[str]:
    """What changed between two version records, e.g. ["defense median 1 → 2"]."""
    changes = []
    if stored.get("harness") != current["harness"]:
        changes.append(f"harness {stored.get('harness')} → {current['harness']}")
    for kind in KINDS + tuple(key for key in SERVER_KINDS if key in current):
        before, now = stored.get(kind, {}), current[kind]
        for name in sorted(set(before) | set(now)):
            if before.get(name) != now.get(name):
                changes.append(f"{kind} {name} {before.get(name, '-')} → {now.get(name, '-')}")
    return changes


def stale_reason(record: dict, current: dict) -> str | None:
    """Why a stored run no longer matches the code's behaviour, or None."""
    changes = differences(recorded(record), current)
    if not changes:
        return None
    return "stale: behaviour changed since the run (" + "; ".join(changes) + ")"
