"""LSTM or GRU reading an image row by row (H steps of C*W features); the last state classifies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RNN(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        cell: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        channels, _, width = input_shape
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = recurrent(
            input_size=channels * width,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        rows = images.permute(0, 2, 1, 3).reshape(batch, height, channels * width)
        if rows.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16 LSTM primitive on CPUs without bf16 units ("could not create a primitive
            # descriptor"): under CPU autocast the recurrence runs in fp32, the head in bf16
            with torch.autocast("cpu", enabled=False):
                outputs, _ = self.rnn(rows.float())
        else:
            outputs, _ = self.rnn(rows)
        return self.head(outputs[:, -1])
