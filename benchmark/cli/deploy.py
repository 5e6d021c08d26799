"""`deploy`: the replicated-server protocol on real processes (benchmark.deploy), timing
vanilla parameter-server SGD against ByzSGD."""
from __future__ import annotations

import argparse
import json

from .. import deploy
from ..api import UsageError
from ..processes import single_thread
from ..config import make_config
from ._common import add_cell_identity, add_run_settings, run_settings


def register(commands) -> None:
    parser = commands.add_parser(
        "deploy", help="run the server protocol on processes (torch.distributed, gloo)",
        description="Run the protocol with one process per server and per worker "
                    "(torch.distributed, gloo over loopback) and measure steps per second: "
                    "vanilla parameter-server SGD (one server, averaging) and ByzSGD "
                    "(--servers replicas running --defense, pull and gather rules). All "
                    "workers are honest; Byzantine servers run --server-attack. A process "
                    "that dies or hangs stops the deployment with an error naming it.")
    add_cell_identity(parser)
    parser.add_argument("--protocol", choices=("both", "vanilla", "byzsgd"), default="both",
                        help="which protocol to run (default both)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="stop with an error when no process progresses for this long "
                             "(default 60)")
    parser.add_argument("--fault", type=deploy.Fault.parse, help=argparse.SUPPRESS)  # tests
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_run_settings(parser)
    parser.set_defaults(handler=main, defense="mda", servers=None)


def configs(args) -> dict:
    settings = run_settings(args)
    if args.attack != "none":
        raise UsageError("deploy runs honest workers only: drop --attack")
    if settings.get("worker_equivocation"):
        raise UsageError("deploy runs honest workers only: drop --worker-equivocation")
    if args.momentum == "server":
        raise UsageError("deploy supports momentum at 'worker' or 'update', not 'server'")
    common = dict(task=args.task, momentum_at=args.momentum, f=args.f, seed=args.seed,
                  **{key: value for key, value in settings.items()
                     if key not in ("servers", "byzantine_servers", "server_attack")})
    chosen = {}
    if args.protocol in ("both", "vanilla"):
        chosen["vanilla"] = make_config(**common, defense="average")
    if args.protocol in ("both", "byzsgd"):
        servers = settings.get("servers", 4)
        if servers < 2:
            raise UsageError("ByzSGD replicates the server: give --servers 2 or more")
        chosen["byzsgd"] = make_config(
            **common, defense=args.defense, servers=servers,
            byzantine_servers=settings.get("byzantine_servers", 0),
            server_attack=settings.get("server_attack", "none"))
    for config in chosen.values():
        if config.steps <= args.warmup:
            raise UsageError(f"--steps ({config.steps}) must exceed --warmup ({args.warmup})")
        if config.local_steps != 1 or config.f_real is not None:
            raise UsageError("deploy runs one local step and no f_real")
        if config.participants is not None:
            raise UsageError("deploy runs every worker each step: drop --participants")
    return chosen


def main(args) -> int:
    if args.timeout <= 0 or args.warmup < 0:
        raise UsageError("--timeout must be positive and --warmup at least 0")
    chosen = configs(args)
    single_thread()
    results = {}
    for name, config in chosen.items():
        try:
            results[name] = deploy.run(config, warmup=args.warmup, timeout=args.timeout,
                                       fault=args.fault)
        except deploy.DeployError as error:
            print(f"error: {name}: {error}")
            return 1
        results[name].pop("parameters")
        results[name].pop("first_pulls")
        results[name]["servers"] = config.servers
        results[name]["workers"] = config.n
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, result in results.items():
        print(f"{name:<8} {result['servers']} server(s), {result['workers']} workers, "
              f"{result['processes']} processes: {result['steps_per_second']:.1f} steps/s "
              f"over {result['steps_timed']} steps, server 0's test accuracy "
              f"{result['accuracy']:.4f}")
    return 0
