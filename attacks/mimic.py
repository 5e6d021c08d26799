"""Mimic: every Byzantine worker copies the honest vector that most increases heterogeneity.

Karimireddy et al. pick the mimicked worker i* during a warm-up and keep it for the rest
of training. `keep_after=K` does that: for the first K steps i* is chosen afresh, then
the K-th step's choice is kept for the run (a per-run state, saved with checkpoints).
The default `keep_after=0` chooses afresh at every step, as the benchmark's first
version of mimic did (the committed standard results ran with it).

Honest rows keep their worker's place from step to step (the shuffle comes after the
attack), so a row index names one honest worker for the whole run.
"""
import torch

from benchmark.api import Attack


def most_heterogeneous(honest: torch.Tensor) -> int:
    """Index of the honest row farthest from the mean along the top principal direction.

    The projections of the centered rows C onto the top eigenvector of CᵀC are proportional
    to the top eigenvector of the small h×h Gram matrix CCᵀ, so no d×d matrix is formed.
    """
    centered = (honest - honest.mean(dim=0)).to(torch.float64)
    _, vectors = torch.linalg.eigh(centered @ centered.T)
    return int(vectors[:, -1].abs().argmax())


def target(honest, keep_after, state):
    """The mimicked row: chosen afresh until `keep_after` steps have chosen, then kept."""
    if keep_after == 0:
        return most_heterogeneous(honest)
    if state.get("chosen", 0) < keep_after:
        state["worker"] = most_heterogeneous(honest)
        state["chosen"] = state.get("chosen", 0) + 1
    return state["worker"]


def craft(honest, f, defense, keep_after=0, *, state=None):
    return honest[target(honest, keep_after, state)].expand(f, -1).clone()


def check(n, f, keep_after=0):
    if keep_after < 0:
        return f"keep_after must be 0 (choose every step) or a number of steps, not {keep_after}"
    return None


attack = Attack(
    name="mimic",
    attack=craft,
    check=check,
    options={"keep_after": 0},
    stateful=True,
    description="Copy of the honest vector with the largest projection on the honest vectors' "
                "top principal direction (chosen afresh each step; keep_after=K keeps the "
                "K-th step's choice for the run)",
    reference="Karimireddy et al., Byzantine-robust learning on heterogeneous datasets via "
              "bucketing, ICLR 2022",
)
