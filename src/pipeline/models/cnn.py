"""The classic digit CNN: conv blocks that halve the image, then a dense classifier.

`padding="valid"` and `hidden=None` give the Keras recipe of the project's seed (conv, ReLU,
pool, flatten, one dense layer); the defaults add padding, batch norm and a hidden dense layer.
`downsample="stride"` halves the image with a stride-2 convolution instead of a convolution at
full size and a max pool: a quarter of the convolutions' work and no pooling pass, the design of
the cheap students that compression distils (`compression.student_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CNN(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int],
        kernel_size: int,
        padding: str,
        hidden: int | None,
        dropout: float,
        batch_norm: bool,
        channels_last: bool,
        downsample: str = "pool",
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        if downsample not in ("pool", "stride"):
            raise ValueError(f"downsample must be 'pool' or 'stride', got {downsample!r}")
        pad = kernel_size // 2 if padding == "same" else 0  # an int: quantized and exported convs take no "same"
        stride = 2 if downsample == "stride" else 1
        for out_channels in channels:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=pad, bias=not batch_norm)
            blocks.append(conv)
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            blocks.append(nn.ReLU(inplace=True))
            if stride == 1:
                blocks.append(nn.MaxPool2d(2))
            height, width = (_halved(size, kernel_size, pad, stride) for size in (height, width))
            in_channels = out_channels
            if height <= 0 or width <= 0:
                raise ValueError(f"{len(channels)} conv blocks shrink a {tuple(input_shape)} image to nothing")
        self.features = nn.Sequential(*blocks)
        features = in_channels * height * width
        dense: list[nn.Module] = [nn.Linear(features, hidden), nn.ReLU(inplace=True)] if hidden else []
        self.head = nn.Sequential(nn.Flatten(), *dense, nn.Dropout(dropout), nn.Linear(hidden or features, num_classes))
        if channels_last:
            self.features.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # oneDNN's NHWC kernels: ~1.3x faster training, 2x inference here
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(images))


def _halved(size: int, kernel_size: int, pad: int, stride: int) -> int:
    """An image side after one block: the convolution's output (PyTorch's formula), then the pool's where stride is 1."""
    convolved = (size + 2 * pad - kernel_size) // stride + 1
    return convolved // 2 if stride == 1 else convolved
