"""Helpers shared by the server attacks."""
import torch


def mean_and_spread(models: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The correct models' mean and coordinate-wise (unbiased) standard deviation; zero
    spread for a single model."""
    mean = models.mean(dim=0)
    if len(models) < 2:
        return mean, torch.zeros_like(mean)
    return mean, models.std(dim=0)


def copies(model: torch.Tensor, f: int) -> torch.Tensor:
    """f rows holding `model` (a fresh tensor: the receivers may keep it)."""
    return model.unsqueeze(0).repeat(f, *(1,) * model.dim())
