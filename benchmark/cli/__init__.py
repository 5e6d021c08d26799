"""`python -m benchmark COMMAND`: each module in this package adds one command.

A command module defines `register(subparsers)`, which adds its parser and sets
`handler=function(args) -> exit code` on it.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..api import UsageError
from ..isolated_defense import process_settings, settings_applied

USAGE_EXIT = 2


class Parser(argparse.ArgumentParser):
    """argparse with our exit code for bad input (2, as argparse) and a hint."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}\n"
                              f"  (see `{self.prog} --help`)\n")


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmark",
                    description="Byzantine-resilient distributed SGD benchmark: run cells and "
                                "matrices, list plugins, study results, build the leaderboard.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return USAGE_EXIT
    # what a command sets for itself and its workers (cli._common.apply_defense_process)
    with settings_applied(process_settings()):
        return _handle(args)


def _handle(args) -> int:
    try:
        return args.handler(args) or 0
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_EXIT
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: completed cells are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
