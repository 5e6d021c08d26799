"""`Aggregated`: what a selecting defense returns. Its own module so that both the plugin
surface (benchmark.api) and the building blocks it re-exports (benchmark.distances) can
import it without importing each other."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Aggregated(NamedTuple):
    """What a selecting defense may return instead of a bare vector.

    `selected` holds the row indices (into the `gradients` it was given) that
    the rule kept; the harness turns it into the fraction of Byzantine picks.
    """
    vector: torch.Tensor
    selected: torch.Tensor
