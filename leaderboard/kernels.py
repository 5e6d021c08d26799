"""The speed table, from the kernel micro-benchmarks' files results/kernels/*.json.

Each file holds a JSON list of measurements, or an object whose "results" is that list
(as `python -m benchmark kernels` writes it, with its "machine" and "settings" beside),
one measurement per (defense, n, f, d, device):
    {"defense": "krum", "n": 51, "f": 24, "d": 79510, "device": "cpu",
     "median_ms": 12.5,          # median wall time of one aggregation, milliseconds
     "ratio_to_mean": 40.1,      # median_ms / the median time of a plain mean, same inputs
     "ratio_to_gram": 1.3}       # median_ms / the median time of the n x n Gram matrix
Ratios may be null where not measured. Where another project's implementation was timed
too, "peer" names it, "ratio_to_peer" is median_ms over its time and "peer_agrees" says
whether it returned the same vector. Other keys are ignored. A file that does not
follow this format is listed among the exclusions with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

MEASUREMENTS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["defense", "n", "f", "d", "device", "median_ms", "ratio_to_mean",
                     "ratio_to_gram"],
        "properties": {
            "defense": {"type": "string"}, "device": {"type": "string"},
            "n": {"type": "integer", "minimum": 1}, "f": {"type": "integer", "minimum": 0},
            "d": {"type": "integer", "minimum": 1},
            "median_ms": {"type": "number", "minimum": 0},
            "ratio_to_mean": {"type": ["number", "null"]},
            "ratio_to_gram": {"type": ["number", "null"]},
            "peer": {"type": "string"}, "ratio_to_peer": {"type": "number", "minimum": 0},
            "peer_agrees": {"type": "boolean"},
        },
    },
}
SCHEMA = {"oneOf": [MEASUREMENTS, {"type": "object", "required": ["results"],
                                   "properties": {"results": MEASUREMENTS}}]}
COLUMNS = ("device", "d", "n", "f", "defense", "median_ms", "ratio_to_mean", "ratio_to_gram")
PEER_COLUMNS = ("peer", "ratio_to_peer", "peer_agrees")  # optional


@dataclass(frozen=True)
class Measurement:
    device: str
    d: int
    n: int
    f: int
    defense: str
    median_ms: float
    ratio_to_mean: float | None
    ratio_to_gram: float | None
    peer: str | None = None              # another project's implementation (benchmark.peers)
    ratio_to_peer: float | None = None   # median_ms / the peer's, same rounds and input
    peer_agrees: bool | None = None      # whether the peer's output was the same vector


def load(root: Path | str) -> tuple[list[Measurement], list[tuple[str, str]]]:
    """(measurements sorted by device, d, n, f, defense; [(file, why it was skipped)])."""
    rows, problems = [], []
    for path in sorted((Path(root) / "kernels").glob("*.json")):
        name = f"kernels/{path.name}"
        try:
            data = json.loads(path.read_text())
            jsonschema.validate(data, SCHEMA)
        except (OSError, ValueError) as error:
            problems.append((name, f"not readable JSON ({error})"))
            continue
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "top level"
            problems.append((name, f"not the kernel format at {where}: {error.message}"))
            continue
        items = data["results"] if isinstance(data, dict) else data
        rows.extend(Measurement(**{key: item[key] for key in COLUMNS},
                                **{key: item.get(key) for key in PEER_COLUMNS})
                    for item in items)
    rows.sort(key=lambda m: (m.device, m.d, m.n, m.f, m.defense, m.median_ms))
    return rows, problems
