"""The stages of one simulated step, each holding its own state (DESIGN.md, "Scale").

    workers (honest)  ─►  adversary  ─►  channel  ─►  server(s)  ─►  metrics
    sampler, gradients,   attack plugin,  shuffle,      defense, update and
    clipping, local       data-level      input guard   server momentum, θ
    steps, worker         attacks,
    momentum              Byzantine servers

benchmark.engine.Simulation wires them; each stage has `state_dict()` and
`load_state_dict()`, which the Simulation combines for checkpoints.
"""
