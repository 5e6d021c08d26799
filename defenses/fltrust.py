"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021): trust bootstrapped from the server's own data.

The server holds a small clean root data set and computes its own update g0 on it each
step (the harness hands it over as `server_gradient`: benchmark.stages.root). Each row
g_i gets the trust score TS_i = ReLU(cos(g_i, g0)), is rescaled to g0's norm,
ḡ_i = g_i·‖g0‖/‖g_i‖, and the aggregate is Σ TS_i ḡ_i / Σ TS_i.

Deterministic edge cases: a row with a NaN or an infinite entry, or of norm zero, has no
direction and gets trust 0; a finite row whose norm overflows the input's dtype is
measured again in float64 (trust 0 if it overflows there too). The aggregate is the zero
vector when every trust score is 0 (every row opposite or orthogonal to g0) or when g0
itself is zero or not finite (the server then trusts nobody). The rows of positive trust
are reported as selected (their Byzantine share is recorded); f is not used.
"""
import torch

from benchmark.api import Aggregated, AtLeast, Defense, finite_rows, weighted_sum


def _norms_and_dots(gradients, reference, finite):
    """Per row, ‖g_i‖ and <g_i, g0> in float64; rows that overflowed the input's dtype
    are computed again in float64."""
    norms = torch.linalg.vector_norm(gradients, dim=1).to(torch.float64)
    dots = torch.mv(gradients, reference.to(gradients.dtype)).to(torch.float64)
    overflowed = finite & ~(torch.isfinite(norms) & torch.isfinite(dots))
    if bool(overflowed.any()):
        rows = gradients[overflowed].to(torch.float64)
        norms[overflowed] = torch.linalg.vector_norm(rows, dim=1)
        dots[overflowed] = torch.mv(rows, reference)
    return norms, dots


def aggregate(gradients, f, *, server_gradient):
    reference = server_gradient.to(device=gradients.device, dtype=torch.float64)
    reference_norm = torch.linalg.vector_norm(reference)
    finite = finite_rows(gradients)
    nothing = Aggregated(torch.zeros_like(gradients[0]),
                         torch.zeros(0, dtype=torch.long, device=gradients.device))
    if not bool(torch.isfinite(reference_norm) & (reference_norm > 0)):
        return nothing
    norms, dots = _norms_and_dots(gradients, reference, finite)
    usable = finite & torch.isfinite(norms) & (norms > 0)
    safe_norms = torch.where(usable, norms, 1.0)
    trust = (dots / (safe_norms * reference_norm)).clamp(0, 1).masked_fill(~usable, 0)
    total = trust.sum()
    if not bool(total > 0):
        return nothing
    weights = trust * (reference_norm / safe_norms) / total
    return Aggregated(weighted_sum(weights, gradients, usable), trust.nonzero().flatten())


defense = Defense(
    name="fltrust",
    aggregate=aggregate,
    server_gradient=True,
    # No honest-majority assumption: trust comes from the server's root data, not from
    # how many rows agree, so any n >= 1 and any f work (f is not used).
    needs=AtLeast(0, 1),
    requirement="n >= 1; no assumption on f (trust comes from the server's root data)",
    description="Trust score ReLU(cos(g_i, g0)) against the server's own update g0 on its "
                "root data set; rows rescaled to ‖g0‖, trust-weighted mean (zero when no "
                "row is trusted)",
    reference="Cao, Fang, Liu, Gong, FLTrust: Byzantine-robust federated learning via "
              "trust bootstrapping, NDSS 2021",
)
