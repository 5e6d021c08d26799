"""Other projects' implementations of the same rules, timed beside ours by the kernel
benchmark when they are installed (never a dependency of this package).

ByzFL (EPFL, `pip install byzfl`): its aggregators are callables on an [n, d] tensor,
built with f. The kernel benchmark times the peer in the same rounds and on the same
input as our rule and records `ratio_to_peer` (ours / theirs) and whether the two outputs
agree (`peer_agrees`, within float32 rounding): where they do not, the definitions differ
(e.g. Krum's number of neighbours, a fixed number of Weiszfeld iterations), and the ratio
compares the same family of computation rather than the same function.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Callable

import torch

# our rule -> (ByzFL aggregator class, whether it is built with f). Rules whose ByzFL
# version enumerates subsets (MDA, SMEA) are left out: at the paper's n it would not end.
BYZFL_RULES = {"average": ("Average", False), "median": ("Median", False),
               "trmean": ("TrMean", True), "geomed": ("GeometricMedian", False),
               "krum": ("Krum", True), "multi-krum": ("MultiKrum", True),
               "meamed": ("Meamed", True), "caf": ("CAF", True)}


def byzfl_version() -> str | None:
    try:
        return importlib.metadata.version("byzfl")
    except importlib.metadata.PackageNotFoundError:
        return None


def load() -> None:
    """Imports the installed peer libraries (seconds: they pull in plotting libraries)."""
    if byzfl_version() is not None:
        importlib.import_module("byzfl.aggregators.aggregators")


def peer_of(label: str, f: int) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(the peer's name and version, its aggregation of an [n, d] tensor) for a rule
    given without options, or None where no installed peer implements it."""
    if ":" in label or "+" in label or label not in BYZFL_RULES:
        return None
    version = byzfl_version()
    if version is None:
        return None
    aggregators = importlib.import_module("byzfl.aggregators.aggregators")
    name, takes_f = BYZFL_RULES[label]
    rule = getattr(aggregators, name)(f=f) if takes_f else getattr(aggregators, name)()
    return f"byzfl {version}", rule


def agrees(ours, theirs) -> bool:
    """Whether two aggregates are the same vector up to float32 rounding."""
    ours = ours[0] if isinstance(ours, tuple) else ours
    theirs = torch.as_tensor(theirs).to(dtype=torch.float32, device=ours.device)
    return ours.shape == theirs.shape and bool(
        torch.allclose(ours.float(), theirs, rtol=1e-4, atol=1e-5 * float(ours.abs().max())))
