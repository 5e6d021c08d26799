"""Infinity: every Byzantine worker sends a vector of +inf (or -inf)."""
import math

from benchmark.api import Attack


def craft(honest, f, defense, negative=False):
    return honest.new_full((f, honest.shape[1]), -math.inf if negative else math.inf)


attack = Attack(
    name="inf",
    attack=craft,
    description="Vectors of +inf (-inf with negative=true): unbounded values in every coordinate",
    reference="Blanchard et al., Machine learning with adversaries, NeurIPS 2017 "
              "(a single unbounded vector breaks averaging)",
)
