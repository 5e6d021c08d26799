"""Helper of the rop and sparse attacks (not an attack: the underscore keeps it out of
discovery)."""
import torch


def coordinate_std(vectors: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The unbiased coordinate-wise standard deviation of the rows around `mean` (their
    mean); zeros for a single row."""
    if len(vectors) < 2:
        return torch.zeros_like(mean)
    return (vectors - mean).square_().sum(dim=0).div_(len(vectors) - 1).sqrt_()
