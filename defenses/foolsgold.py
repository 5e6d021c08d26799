"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020, Algorithm 1), history-free.

The paper scores each client by the cosine similarity of its *accumulated* updates to
the others'. Here rows come in a fresh random order every step and carry no identity,
so no per-client history can be kept: this is the per-step adaptation, where each
row's "history" is its current vector (the paper's rule applied to one round).

With cs_ij the cosine similarity of rows i and j (i != j; 0 when one is zero):
    v_i = max_j cs_ij;  pardoning: cs_ij <- cs_ij · v_i / v_j when v_j > v_i (and
    v_j > 0, which the paper leaves implicit);
    α_i = 1 - max_j cs_ij, clipped to [0, 1], then divided by max α (0 if it is 0);
    α_i <- kappa · (ln(α_i / (1 - α_i)) + 0.5) with α_i = 1 taken as 0.99, clipped to
    [0, 1] (α_i = 0 stays 0).
The rule returns the weighted mean sum α_i g_i / sum α_i (the zero vector when every
weight is 0: all rows look like one sybil group). Non-finite rows get weight 0 and take
no part in the similarities. The paper's optional feature-importance weighting is not
used.
"""
import math

import torch

from benchmark.api import AtLeast, Defense, finite_rows, gram_matrix, weighted_sum


def weights(gram, finite, kappa):
    """The FoolsGold weights α (float64) from the Gram matrix of the rows."""
    n = gram.shape[0]
    squares = gram.diagonal().clamp_min(0)
    outer = squares[:, None] * squares[None, :]
    # sqrt(a² · a²) is a exactly: identical rows have a cosine of exactly 1
    cosine = torch.where(outer > 0, gram / outer.sqrt(), 0.0).clamp(-1, 1)
    cosine = cosine.masked_fill(~(finite[:, None] & finite[None, :]), 0.0)
    others = finite[None, :] & ~torch.eye(n, dtype=torch.bool, device=gram.device)
    cosine = cosine.masked_fill(~others, -math.inf)
    v = cosine.max(dim=1).values
    pardon = torch.where((v[None, :] > v[:, None]) & (v[None, :] > 0), v[:, None] / v[None, :], 1.0)
    cosine = torch.where(others, cosine * pardon, -math.inf)
    alpha = (1 - cosine.max(dim=1).values).clamp(0, 1).masked_fill(~finite, 0.0)
    top = alpha.max()
    if not bool(top > 0):
        return torch.zeros_like(alpha)
    alpha = (alpha / top).masked_fill(alpha == top, 0.99)
    logit = kappa * (torch.log(alpha / (1 - alpha)) + 0.5)
    return logit.nan_to_num(nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)


def aggregate(gradients, f, kappa=1.0):
    gram, finite = gram_matrix(gradients)
    alpha = weights(gram, finite, kappa)
    total = alpha.sum()
    if not bool(total > 0):
        return torch.zeros_like(gradients[0])
    return weighted_sum(alpha / total, gradients, finite)


def check(n, f, kappa):
    if not (math.isfinite(kappa) and kappa > 0):
        return f"kappa must be a positive number, not {kappa}"
    return None


defense = Defense(
    name="foolsgold",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(plus=2),
    description="FoolsGold per step (no history: rows carry no identity): weights from 1 - "
                "the largest pardoned cosine similarity to another row, logit-scaled; "
                "weighted mean",
    reference="Fung, Yoon, Beschastnikh, The limitations of federated learning in sybil "
              "settings, RAID 2020",
)
