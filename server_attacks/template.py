"""Template server attack: copy this file to server_attacks/<name>.py and edit.

What the Byzantine parameter servers send when the server is replicated (--servers > 1).
The harness calls `attack` when the honest workers pull models (recipients: the workers)
and at every gather (recipients: the correct servers), with the correct servers' current
models. Return one model per Byzantine server, [f, d] (the same to every recipient), or
[f, recipients, d] to tell each recipient something else (equivocation).
"""
from benchmark.api import ServerAttack


def craft(models, f, recipients, scale=-1.0):
    # every Byzantine server sends the correct models' mean, scaled; `scale` is an option
    # (keyword arguments with defaults are, typed by their default)
    return (scale * models.mean(dim=0)).repeat(f, 1)


def check(n, f, scale):
    # why (n servers, f of them Byzantine, these options) cannot work, or None
    return None


server_attack = ServerAttack(
    name="template",
    attack=craft,
    check=check,
    description="the correct models' mean times scale (an example to copy)",
    reference="-",
)
