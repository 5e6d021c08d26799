"""Plain averaging: the non-robust baseline."""
from benchmark.api import Defense


def aggregate(gradients, f):
    # Not robust by design: one non-finite row makes the output non-finite, and the
    # harness then ends the cell as failed (tested).
    return gradients.mean(dim=0)


defense = Defense(
    name="average",
    aggregate=aggregate,
    description="Coordinate-wise mean of all rows (not robust; a non-finite row makes the "
                "output non-finite)",
    reference="Standard distributed SGD",
)
