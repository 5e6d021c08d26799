"""What Byzantine parameter servers send: one module per attack (benchmark.api.ServerAttack)."""
