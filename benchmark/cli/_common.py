"""Arguments shared by the commands that configure runs."""
from __future__ import annotations

import argparse
import os
import re
import json

from ..api import UsageError
from ..config import FIELDS, PLACEMENTS, type_problem


def parse_set(items: list[str] | None) -> dict:
    """`--set key=value` items; values are JSON when they parse as JSON, else strings (a
    text setting keeps the text: --set profile=2024). Each value must have its setting's
    type (benchmark.config.type_problem): --set n=11.5 is refused here, not run."""
    settings = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or key not in FIELDS:
            raise UsageError(f"--set {item!r}: write --set KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(FIELDS))}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if type_problem(key, value) and not type_problem(key, text):
            value = text
        # lr_schedule: a JSON list of pairs, which make_config turns into a tuple and checks
        problem = None if key == "lr_schedule" else type_problem(key, value)
        if problem:
            raise UsageError(f"--set {item!r}: {problem}")
        settings[key] = value
    return settings


def add_results_location(parser: argparse.ArgumentParser) -> None:
    """--results and --profile: which stored results (leaderboard, validate, verify)."""
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--profile", default=None,
                        help="one profile's results (default: the board's profiles: board for "
                             "the real tasks, then standard for the others, digits among them)")


def add_defense_process(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in-process-defense", action="store_true",
        help="run the defense in the run's own process, for debugging (pdb, prints). By "
             "default each run's defense runs in a fresh process of its own that holds "
             "nothing of the simulation (results are the same bytes either way)")


def apply_defense_process(args: argparse.Namespace) -> None:
    """Before any cell runs: --in-process-defense, for this process and its workers. Without
    it, these processes take the defenses' declarations from a child and never import a
    defense module (benchmark.defense_catalog); `main` restores both settings."""
    from .. import defense_catalog
    from ..isolated_defense import IN_PROCESS_VARIABLE, wanted
    from ..process_guard import keep_memory_private

    if args.in_process_defense:
        os.environ[IN_PROCESS_VARIABLE] = "1"
    elif wanted("cpu"):
        os.environ[defense_catalog.VARIABLE] = "child"
        keep_memory_private()  # what it holds (a keyed re-run's secret) out of a host's reach


def add_cell_identity(parser: argparse.ArgumentParser) -> None:
    """--task, --defense, --attack, --momentum, --f, --seed: which single run."""
    parser.add_argument("--task", default="digits", help="task name (default: digits)")
    parser.add_argument("--defense", default="average", help="defense (GAR) name[:options]")
    parser.add_argument("--attack", default="none", help="attack name[:options]")
    parser.add_argument("--momentum", type=placement, default="worker",
                        help="momentum placement: update, worker (default) or server")
    parser.add_argument("--f", type=int, help="declared Byzantine count (default: the task's)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")


def add_run_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyper-parameters (default: the task's own)")
    group.add_argument("--n", type=int, help="number of workers")
    group.add_argument("--f-real", type=int, help="workers that really attack (default: --f)")
    group.add_argument("--participants", type=int, metavar="M",
                       help="partial participation: M of the n workers, drawn at random "
                            "each step from the run's seed (default: all n)")
    group.add_argument("--steps", type=int, help="training steps")
    group.add_argument("--batch-size", type=int, help="batch size per worker")
    group.add_argument("--lr", type=float, help="learning rate")
    group.add_argument("--momentum-factor", type=float, dest="momentum_factor",
                       help="momentum coefficient mu (the placement is --momentum)")
    group.add_argument("--dampening", type=float, help="momentum dampening delta")
    group.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help="Nesterov momentum (update and worker placements)")
    group.add_argument("--clip", type=float, help="honest gradient norm clip (<= 0: none)")
    group.add_argument("--l2", type=float, help="l2 regularisation added to each gradient")
    group.add_argument("--eval-every", type=int, help="evaluate on the test set every K steps")
    group.add_argument("--no-metrics", dest="metrics", action="store_false", default=None,
                       help="record only loss, distance and norm per step (faster)")
    group.add_argument("--device", help="cpu (default) or cuda[:i]")
    group.add_argument("--data-dir", help="folder holding the task's dataset files")
    group.add_argument("--time-budget", type=float,
                       help="seconds before a run is failed (default 3600); a step still "
                            "running at budget + grace is killed and the cell stored failed")
    servers = parser.add_argument_group(
        "replicated servers (ByzSGD; default: one correct server)")
    servers.add_argument("--servers", type=int, metavar="N_PS",
                         help="parameter servers, each with its own model (default 1)")
    servers.add_argument("--byzantine-servers", type=int, metavar="F_PS",
                         help="how many of them are Byzantine (default 0)")
    servers.add_argument("--gather-every", type=int, metavar="T",
                         help="steps between two gathers of the servers' models (default 10)")
    servers.add_argument("--gather-rule", metavar="DEFENSE",
                         help="rule a correct server applies to the models it gathers "
                              "(default median: distributed median contraction)")
    servers.add_argument("--pull-rule", metavar="DEFENSE",
                         help="rule a worker applies to the models it pulls (default median)")
    servers.add_argument("--server-attack", metavar="ATTACK",
                         help="what the Byzantine servers send: model-little, model-empire, "
                              "equivocation, stale, silence (default none)")
    servers.add_argument("--worker-equivocation", action="store_true", default=None,
                         help="the Byzantine workers send the attack's vectors to the even-"
                              "numbered correct servers and their mirror image about the "
                              "honest mean to the odd ones, pulling the correct servers apart "
                              "(needs --servers > 1)")
    group.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any other run setting, e.g. --set 'lr_schedule=[[1500,0.001]]' "
                            "(repeatable)")


def run_settings(args: argparse.Namespace) -> dict:
    settings = {key: getattr(args, key) for key in
                ("n", "f_real", "steps", "batch_size", "lr", "dampening", "nesterov", "l2",
                 "eval_every", "metrics", "device", "data_dir", "time_budget",
                 "servers", "byzantine_servers", "gather_every", "gather_rule", "pull_rule",
                 "server_attack", "worker_equivocation", "participants")}
    settings["momentum"] = args.momentum_factor
    if args.clip is not None:  # <= 0: no clip; nan stays, for validate to refuse
        settings["clip"] = None if args.clip <= 0 else args.clip
    settings.update(parse_set(args.set))
    return {key: value for key, value in settings.items() if value is not None}


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text: str) -> float:
    """Seconds in '90m', '2h', '1h30m', '45s' or '600' (argparse type)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 90m, 2h, "
                                         "1h30m or 600 (seconds)")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the budget must be positive")
    return total


def placement(text: str) -> str:
    if text not in PLACEMENTS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PLACEMENTS)}")
    return text
