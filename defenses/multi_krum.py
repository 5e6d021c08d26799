"""Multi-Krum: the mean of the m rows of lowest Krum score (Blanchard et al. 2017).

Same kernels as defenses/krum.py (benchmark.api); only the default m differs.
"""
from benchmark.api import AtLeast, Defense, krum_bound, krum_check, krum_select

defense = Defense(
    name="multi-krum",
    aggregate=krum_select,
    check=krum_check,
    needs=AtLeast(2, 3),
    upper_bound=krum_bound,
    options={"m": "n-f", "squared": True, "neighbours": "n-f-2"},
    description="Mean of the m rows with the smallest Krum scores (default m = n-f; "
                "an integer or 'n-f-K' also works)",
    reference="Blanchard et al., Machine learning with adversaries: Byzantine tolerant "
              "gradient descent, NeurIPS 2017",
)
