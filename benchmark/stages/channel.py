"""The channel between workers and a server: a fresh seeded shuffle of every row, and
the input guard (neither the attack nor the defense may write to the rows it gets)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from ..bitwise import identical
from ..plugins import ATTACK_MODIFIED, DEFENSE_MODIFIED, PluginFailure


def rows_unchanged(shuffled: torch.Tensor, position: torch.Tensor, *sources) -> bool:
    """Bitwise (so NaN-safe): shuffled[position[j]] is row j of the concatenated sources.
    Row by row on CPU, which reads each tensor once and copies nothing; one gathered
    comparison elsewhere (a single host synchronisation)."""
    if shuffled.device.type != "cpu":
        return identical(shuffled.index_select(0, position), torch.cat(sources))
    rows = itertools.chain(*sources)
    return all(identical(shuffled[p], row) for p, row in zip(position.tolist(), rows))


def which_modified(shuffled: "Shuffled", byzantine: torch.Tensor, placed: int) -> str:
    """Why the defense's input no longer matches the sources: a write through torch moves
    the input's version counter (the attack's is checked by BoundAttack), and only the
    defense can reach the Byzantine rows once placed; a write to an honest row through
    numpy could be either plugin's."""
    honest, matrix = shuffled.honest, shuffled.matrix
    if matrix._version != placed or not rows_unchanged(
            matrix, shuffled.position[len(honest):], byzantine):
        return DEFENSE_MODIFIED
    return (f"{ATTACK_MODIFIED}, or {DEFENSE_MODIFIED}: an honest row changed outside torch "
            "(e.g. through .numpy()), after the harness copied it for the defense and before "
            "it compared the copy again, so either plugin may have written it")


@dataclass
class Shuffled:
    """The defense's input being built: `matrix` row position[j] is source row j."""
    matrix: torch.Tensor
    permutation: torch.Tensor
    position: torch.Tensor
    honest: torch.Tensor

    def place(self, rows: torch.Tensor, first: int) -> None:
        """Copies source rows first, first + 1, ... to their positions. On CPU row by row
        through numpy (1.0-1.6 ms at n = 51, d = 79,510, against 2.2-2.4 ms with torch's
        copy_ per row, whose per-call cost adds up, and 3.4-3.6 ms with index_copy_)."""
        targets = self.position[first:first + len(rows)]
        if self.matrix.device.type != "cpu" or self.matrix.dtype == torch.bfloat16:
            self.matrix.index_copy_(0, targets, rows)
            return
        matrix, source = self.matrix.numpy(), rows.detach().numpy()
        for index, target in enumerate(targets.tolist()):
            matrix[target] = source[index]


class Channel:
    """Delivers the workers' rows to a server's defense in a seeded random order."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator, self.device = generator, device
        self.allocate = None  # (rows, d, dtype) -> the defense's input; default: a new tensor

    def shuffle_honest(self, honest: torch.Tensor, byzantine_rows: int) -> Shuffled:
        """Draws this step's permutation and copies the honest rows to their places:
        shuffled[i] = (honest ++ byzantine)[permutation[i]], so row j of the sources
        lands at position[j]. Done before the attack, so that the attack cannot change
        what the defense sees, and comparing this copy with `honest` afterwards shows
        whether it wrote to `honest`."""
        rows = len(honest) + byzantine_rows
        permutation = torch.randperm(rows, generator=self.generator).to(self.device)
        position = torch.empty_like(permutation)
        position[permutation] = torch.arange(rows, device=self.device)
        matrix = (honest.new_empty((rows, honest.shape[1])) if self.allocate is None
                  else self.allocate(rows, honest.shape[1], honest.dtype))
        shuffled = Shuffled(matrix, permutation, position, honest)
        shuffled.place(honest, 0)
        return shuffled

    @staticmethod
    def aggregate(shuffled: Shuffled, byzantine: torch.Tensor, defense):
        """The defense's output on the shuffled rows, and the fraction of its selected rows
        that are Byzantine (NaN if it selects none). The defense gets the copy made before
        the attack ran; one comparison with the sources afterwards shows whether the attack
        wrote to `honest` or the defense to its input (no second copy, one read)."""
        honest, matrix = shuffled.honest, shuffled.matrix
        if len(honest) + len(byzantine) != len(matrix):
            raise PluginFailure(f"attack returned {len(byzantine)} vectors, expected "
                                f"{len(matrix) - len(honest)}")
        shuffled.place(byzantine, len(honest))
        placed = matrix._version  # rows are placed through numpy: the counter moves only after
        aggregate, selected = defense(matrix)
        if getattr(defense, "read_only_input", False):  # only the attack could write: honest
            if not rows_unchanged(matrix, shuffled.position[:len(honest)], honest):
                raise PluginFailure(ATTACK_MODIFIED)
        elif not rows_unchanged(matrix, shuffled.position, honest, byzantine):
            raise PluginFailure(which_modified(shuffled, byzantine, placed))
        byzantine_selected = math.nan
        if selected is not None and len(selected):
            chosen = shuffled.permutation[selected]
            byzantine_selected = float((chosen >= len(honest)).float().mean())
        return aggregate, byzantine_selected

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
