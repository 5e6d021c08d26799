"""Centered clipping (Karimireddy, He, Jaggi 2021), stateful across steps.

Starting from the previous aggregate v (zero at the first step), each iteration moves
v by the mean of the rows' differences to v, each clipped to norm tau:
    v <- v + (1/n) sum_i (g_i - v) min(1, tau / ||g_i - v||).
A non-finite row is infinitely far from v: its clipped difference has norm tau but no
direction, so it contributes nothing (it still counts in the 1/n).
"""
import torch

from benchmark.api import AtLeast, Defense, finite_rows, weighted_sum


def aggregate(gradients, f, tau=10.0, iterations=1, *, state):
    n = gradients.shape[0]
    finite = finite_rows(gradients)
    center = state.get("center")
    if center is None:
        center = torch.zeros_like(gradients[0])
    for _ in range(iterations):
        norms = torch.linalg.vector_norm(gradients - center, dim=1)
        scale = (tau / norms.clamp_min(torch.finfo(norms.dtype).tiny)).clamp_max(1)
        scale = scale.masked_fill(~finite, 0)
        # v + (1/n) sum_i s_i (g_i - v) = v (1 - sum_i s_i / n) + (1/n) sum_i s_i g_i
        center = center * (1 - scale.sum() / n) + weighted_sum(scale / n, gradients, finite)
    state["center"] = center.clone()
    return center


def check(n, f, tau, iterations):
    if tau <= 0 or iterations < 1:
        return f"tau must be > 0 and iterations >= 1 (got tau={tau}, iterations={iterations})"
    return None


defense = Defense(
    name="cclip",
    aggregate=aggregate,
    check=check,
    needs=AtLeast(2, 1),
    stateful=True,
    description="Centered clipping around the previous aggregate: v += mean of the "
                "differences g_i - v clipped to norm tau, `iterations` times",
    reference="Karimireddy, He, Jaggi, Learning from history for Byzantine robust "
              "optimization, ICML 2021",
)
