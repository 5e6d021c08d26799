"""`Simulation.instrument`: the hook `profile-step` times a step through. It replaces, on
one simulation's stages only, each stage method of TIMED_METHODS, every correct server's
defense, the attack plugin's own work (BoundAttack.craft, not the checks of what it
returns) and the metrics row by `wrap(label, original)`, which must behave as the original
(labels: TIMED_METHODS' and "defense", "attack", "metrics")."""
from __future__ import annotations

from typing import Any, Callable

# stage -> {method: label}: the stage methods `Simulation.instrument` hands to a timer
TIMED_METHODS = {"workers": {"gradients": "gradients", "submissions": "momentum"},
                 "channel": {"shuffle_honest": "aggregate", "aggregate": "aggregate"},
                 "server": {"apply_update": "update"},
                 "replicas": {"pull": "servers", "gather": "servers", "drift": "servers"}}


def instrument(sim, wrap: Callable[[str, Any], Any]) -> None:
    replicas = sim.replicas
    stages = {"workers": [sim.workers] + ([sim.root.worker] if sim.root else []),
              "channel": replicas.channels if replicas else [sim.channel],
              "server": replicas.servers if replicas else [sim.server],
              "replicas": [replicas] if replicas else []}
    for stage, methods in TIMED_METHODS.items():
        for instance in stages[stage]:
            for method, label in methods.items():
                setattr(instance, method, wrap(label, getattr(instance, method)))
    for server in stages["server"]:
        server.defense = wrap("defense", server.defense)
    sim.attack.craft = wrap("attack", sim.attack.craft)
    sim.metrics.row = wrap("metrics", sim.metrics.row)
