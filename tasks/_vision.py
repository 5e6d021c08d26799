"""Shared parts of the image tasks (mnist, fashion-mnist, cifar10, cifar100).

The images stay uint8 on the training device, as decoded from the original files; the
model's first layer (`ImageInput`) scales them to [0, 1], normalises them and, in training
mode only, flips each image left-right with probability 1/2. So batches are sliced from
tensors prepared once, every transform is one batched tensor operation on the device, and
evaluation (eval mode) sees the test images unflipped. The flips draw from torch's global
generator, which the harness seeds from the run's seed (as it does for dropout).

Transforms of the ICLR'21 harness (El Mhamdi, Guerraoui, Rouault, "Distributed Momentum
for Byzantine-resilient SGD"), kept here: MNIST normalised with mean 0.1307 and std 0.3081;
Fashion-MNIST flipped and not normalised; CIFAR-10 and CIFAR-100 flipped and normalised
with the CIFAR-10 channel statistics. That harness also flipped test images at random; we
do not, so that an evaluation is a deterministic function of the parameters.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark import datasets
from benchmark.api import TaskData

MNIST_STATS = ((0.1307,), (0.3081,))
IDENTITY_STATS = ((0.0,), (1.0,))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


class ImageInput(nn.Module):
    """uint8 images [B, H, W] or [B, C, H, W] -> normalised floats; random flips in training.

    (x / 255 - mean) / std is computed as x * scale - shift (equal up to float rounding),
    and only the flipped images are read again: about 1.8 ms for 2,241 Fashion-MNIST
    images on one thread, against 3.9 ms converting, dividing, flipping every image and
    choosing with torch.where (itself 1.3 ms)."""

    def __init__(self, stats: tuple[tuple[float, ...], tuple[float, ...]], flip: bool):
        super().__init__()
        mean, std = (torch.tensor(values, dtype=torch.float64).view(-1, 1, 1)
                     for values in stats)
        if mean.numel() == 1:
            mean, std = mean.view(()), std.view(())
        self.register_buffer("scale", (1 / (255 * std)).float(), persistent=False)
        self.register_buffer("shift", (mean / std).float(), persistent=False)
        self.centred = bool((mean == 0).all())
        self.flip = flip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.flip and self.training:
            flipped = torch.rand(images.shape[0], device=images.device) < 0.5
            if x.is_cuda:  # nonzero() would wait for the device
                x = torch.where(flipped.view(-1, *(1,) * (x.dim() - 1)), x.flip(-1), x)
            else:
                rows = flipped.nonzero()[:, 0]
                x.index_copy_(0, rows, x.index_select(0, rows).flip(-1))
        x.mul_(self.scale)
        return x if self.centred else x.sub_(self.shift)

    def extra_repr(self) -> str:
        return f"flip={self.flip}"


def mlp(stats, flip: bool) -> nn.Module:
    """The ICLR'21 MNIST model: 784-100-10, ReLU; d = 79,510."""
    return nn.Sequential(ImageInput(stats, flip), nn.Flatten(),
                         nn.Linear(28 * 28, 100), nn.ReLU(), nn.Linear(100, 10))


def empire_cnn(num_classes: int, hidden: int) -> nn.Module:
    """The CNN of "Fall of Empires" (Xie et al., UAI 2019) as the ICLR'21 harness built it:
    two conv3x3-ReLU-BN blocks of 64, max-pool, dropout .25, two blocks of 128, max-pool,
    dropout .25, fc 8192 -> hidden, ReLU, dropout .25, fc -> classes. Logits out (the loss,
    cross-entropy, applies the log-softmax)."""
    def block(inputs, outputs):
        return [nn.Conv2d(inputs, outputs, kernel_size=3, padding=1), nn.ReLU(),
                nn.BatchNorm2d(outputs)]

    return nn.Sequential(
        ImageInput(CIFAR_STATS, flip=True),
        *block(3, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(128 * 8 * 8, hidden), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(hidden, num_classes))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(array, requirements="W"))


def load_images(name: str, data_dir: str | None, num_classes: int) -> TaskData:
    """The dataset `name` (see benchmark.datasets) as uint8 image and int64 label tensors."""
    arrays = datasets.load_arrays(name, data_dir)
    return TaskData(_tensor(arrays.train_images), _tensor(arrays.train_labels),
                    _tensor(arrays.test_images), _tensor(arrays.test_labels),
                    num_classes=num_classes)
