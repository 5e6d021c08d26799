"""Helpers the stages share to save and restore their state."""
from __future__ import annotations

import torch


def on_device(value, device: torch.device):
    """`value` with every tensor inside (dicts, lists, tuples) moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: on_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [on_device(item, device) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def restored(name: str, current: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """A copy of the checkpoint's tensor `saved` in `current`'s device and dtype; a
    ValueError if its shape differs (a checkpoint of another run)."""
    if saved.shape != current.shape:
        raise ValueError(f"checkpoint {name} has shape {tuple(saved.shape)}, "
                         f"this run {tuple(current.shape)}")
    return saved.to(device=current.device, dtype=current.dtype).clone()
