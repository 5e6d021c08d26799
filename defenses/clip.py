"""Static norm clipping (pre-aggregator): every row is scaled by min(1, tau / ||g_i||),
tau a fixed threshold (option `tau`) or, when tau is unset, the median of the rows'
norms (for an even count the mean of the two middle norms). Compose: `clip+median`,
`clip:tau=2+krum`.

Non-finite rows are left as they are (their norm counts as +inf in the median, so at
most f of them leave it finite when n >= 2f+1): the next rule treats them as
infinitely far.
"""
import math

import torch

from benchmark.api import Defense, finite_rows


def threshold(norms, tau):
    """tau, or the median of `norms` (non-finite rows' norms already set to +inf)."""
    if tau is not None:
        return torch.as_tensor(float(tau), dtype=norms.dtype, device=norms.device)
    ordered, n = norms.sort().values, norms.shape[0]
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def aggregate(gradients, f, tau=None):
    finite = finite_rows(gradients)
    norms = torch.linalg.vector_norm(gradients, dim=1).masked_fill(~finite, math.inf)
    scale = (threshold(norms, tau) / norms.clamp_min(torch.finfo(norms.dtype).tiny)).clamp_max(1)
    return torch.where(finite[:, None], gradients * scale[:, None], gradients)


def check(n, f, tau):
    if tau is not None:
        if isinstance(tau, str) or not (math.isfinite(tau) and tau > 0):
            return f"tau must be a positive number (or unset: the median norm), not {tau!r}"
        return None
    return None if n >= 2 * f + 1 else f"clip (median norm) needs n >= 2f+1 = {2 * f + 1}"


defense = Defense(
    name="clip",
    aggregate=aggregate,
    check=check,
    requirement="n >= 2f+1 (median norm); any n with a fixed tau",
    preaggregator=True,
    keeps_rows=True,
    description="Pre-aggregator: clip every row to norm tau (unset: the median norm of the "
                "rows); compose as clip+RULE",
    reference="Static clipping as studied in Allouah et al., Boosting robustness by clipping "
              "gradients in distributed learning, AISTATS 2025 (baseline of ARC)",
)
