"""The random streams of a run: every random choice flows from the run's seed through one
generator per stream, so that each stream is reproducible and independent of the others.

`stream_seed` is public arithmetic, and a defense's generator state contains its seed, so a
defense can recover the run's seed and replay the shuffle; a trusted re-run therefore keys
the streams a defense could use (KEYED_STREAMS) with a secret (`keyed_seed`, `verify
--keyed`). The process-wide generators (torch, numpy, random) are captured for checkpoints.
"""
from __future__ import annotations

import hashlib
import hmac
import random

import numpy as np
import torch

# append only: an index is part of a seed
STREAMS = ("model", "data", "shuffle", "defense", "attack", "servers", "server_attack",
           "model_rules", "participation", "root", "jitter")


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """Independent, reproducible seeds for each random stream of a run; `index` numbers
    the generators of one stream (one per replicated server)."""
    return (seed * 1_000_003 + STREAMS.index(stream) * 7919 + 17
            + index * 1_000_000_007) % (2 ** 63)


KEYED_STREAMS = ("shuffle", "defense", "servers")  # what a defense could use to find the rows


def keyed_seed(key: bytes, seed: int, stream: str, index: int = 0) -> int:
    """stream_seed for a trusted re-run: the stream's seed under a secret key (HMAC-SHA-256),
    which nothing the defense's process holds can invert or predict."""
    digest = hmac.new(key, f"{seed}/{stream}/{index}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2 ** 63)


def global_rng_state(device: torch.device) -> dict:
    """The process-wide generators a model or plugin may draw from (dropout, random flips)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
