"""`list`: the registered defenses, attacks, tasks, server attacks and matrix profiles."""
from __future__ import annotations

import json

from tabulate import tabulate

from .. import matrix, registry

COLUMNS = {"defenses": ["defense", "requires", "options", "reference"],
           "attacks": ["attack", "requires", "options", "description", "reference"],
           "server_attacks": ["server attack", "requires", "options", "description",
                              "reference"],
           "tasks": ["task", "description", "defaults"],
           "profiles": ["profile", "description"]}
WIDTH = {"requires": 36, "options": 40, "defaults": 48, "description": 44, "reference": 50}


def register(commands) -> None:
    parser = commands.add_parser("list", help="list defenses, attacks, tasks or profiles",
                                 description="List what is registered, with options and "
                                             "references.")
    parser.add_argument("what", choices=["defenses", "attacks", "tasks", "server_attacks",
                                                "profiles"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=main)


def _value(value) -> str:
    """An option's value without inner spaces, so that `name=value` stays one token."""
    if isinstance(value, list):
        return "[" + ",".join(_value(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_value(item) for item in value) + ")"
    return str(value)


def _options(options: dict) -> list[str]:
    return [f"{k}={_value(v)}" for k, v in options.items()]


def _wrap(units: list[str], width: int) -> str:
    """Joins `units` with spaces into lines of at most `width` characters, breaking only
    between units: a unit longer than `width` gets a line of its own, unbroken."""
    lines, line = [], ""
    for unit in units:
        if line and len(line) + 1 + len(unit) > width:
            lines.append(line)
            line = unit
        else:
            line = f"{line} {unit}" if line else unit
    return "\n".join(lines + [line] if line else lines)


def _cell(column: str, value) -> str:
    if column in ("options", "defaults"):  # "k=v," units: never split inside an option
        units = _options(value)
        return _wrap([unit + "," for unit in units[:-1]] + units[-1:], WIDTH[column])
    return _wrap(str(value or "").split(), WIDTH[column])  # prose: at spaces only


def entries(what: str) -> list[dict]:
    if what == "profiles":
        return [{"name": name, "description": matrix.load_profile(name).description}
                for name in matrix.profile_names()]
    kind = what[:-1]
    rows = []
    for name, plugin in registry.discover(kind).items():
        if name in registry.HIDDEN:
            continue
        if plugin.error:
            rows.append({"name": name, "error": plugin.error})
            continue
        spec = plugin.spec
        row = {"name": name, "description": spec.description, "reference": spec.reference}
        if kind in ("defense", "attack", "server_attack"):
            row["options"] = {k: v for k, v in spec.options.items()}
            row["requirement"] = spec.requirement
        if kind == "defense":
            row["kind"] = "pre-aggregator" if spec.preaggregator else "rule"
        if kind == "task":
            row["defaults"] = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in spec.defaults.items()}
        rows.append(row)
    return rows


def _row(what: str, row: dict) -> list[str]:
    if "error" in row:
        return [row["name"], f"BROKEN: {row['error']}"] + [""] * (len(COLUMNS[what]) - 2)
    keys = {"requires": "requirement"}
    return [row["name"]] + [_cell(column, row.get(keys.get(column, column)))
                            for column in COLUMNS[what][1:]]


def main(args) -> int:
    rows = entries(args.what)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # wrapped here, at spaces and between options only (tabulate's own wrapping splits
    # words), and exactly as many columns as headers
    print(tabulate([_row(args.what, row) for row in rows], headers=COLUMNS[args.what],
                   disable_numparse=True))
    return 0
