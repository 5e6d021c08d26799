"""Krum (Blanchard et al. 2017), with Multi-Krum's m and the ICLR'21-harness variant.

score_i = sum of the squared distances from row i to its n - f - 2 nearest other
rows; Krum returns the row of lowest score, and with m > 1 the mean of the m lowest
(Multi-Krum). The ICLR'21 harness used plain distances, n - f - 1 neighbours and
m = n - f - 2: `krum:squared=false,neighbours=n-f-1,m=n-f-2` selects it. A non-finite
row is infinitely far from every other and ranks behind every finite row.
The kernels live in benchmark.api (shared with multi-krum and bulyan).
"""
from benchmark.api import AtLeast, Defense, krum_bound, krum_check, krum_select

defense = Defense(
    name="krum",
    aggregate=krum_select,
    check=krum_check,
    needs=AtLeast(2, 3),
    upper_bound=krum_bound,
    options={"m": "1", "squared": True, "neighbours": "n-f-2"},
    description="Row with the smallest sum of squared distances to its n-f-2 nearest rows; "
                "m > 1 averages the m best (Multi-Krum; m may be 'n-f' or 'n-f-K')",
    reference="Blanchard et al., Machine learning with adversaries: Byzantine tolerant "
              "gradient descent, NeurIPS 2017",
)
