"""Encoder-only Transformer over image tokens (square patches or rows), pooled by a CLS token or the mean."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Transformer(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        tokens: str,
        patch_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        ff_dim: int,
        dropout: float,
        pool: str,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        if tokens == "patch":
            if height % patch_size or width % patch_size:
                raise ValueError(f"model.patch_size={patch_size} does not divide the {height}x{width} image")
            self.patch = (patch_size, patch_size)
        else:
            self.patch = (1, width)
        patch_h, patch_w = self.patch
        num_tokens = (height // patch_h) * (width // patch_w)
        self.pool = pool
        self.embed = nn.Linear(channels * patch_h * patch_w, d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.position = nn.Parameter(torch.randn(1, num_tokens + 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, ff_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x tokens x (C * patch_h * patch_w), row-major over patches."""
        batch, channels, _, _ = images.shape
        patch_h, patch_w = self.patch
        patches = images.unfold(2, patch_h, patch_h).unfold(3, patch_w, patch_w)  # N C h w ph pw
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, -1, channels * patch_h * patch_w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.tokenize(images))
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.position
        encoded = self.encoder(tokens)
        pooled = encoded[:, 0] if self.pool == "cls" else encoded[:, 1:].mean(dim=1)
        return self.head(self.norm(pooled))
