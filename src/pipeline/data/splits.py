"""Train/val/test splits held as tensors, and their content digests (the data set's identity)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from pipeline.errors import DataError


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # float32, N x C x H x W, values in [0, 1]
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """SHA-256 over every image and label: this split's identity."""
        sha = hashlib.sha256(self.images.numpy().tobytes())
        sha.update(self.labels.numpy().tobytes())
        return sha.hexdigest()


@dataclass(frozen=True)
class ImageSplits:
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def check_digest(self, expected: str | None) -> None:
        """Refuse data that is not the stored run's (``expected`` is its `data.digest` tag, if any)."""
        if expected is not None and (actual := self.digest()) != expected:
            raise DataError(f"data: content digest {actual[:12]} differs from the stored run's {expected[:12]}")

    def digest(self) -> str:
        """SHA-256 over the split digests and class names: the whole data set's identity."""
        parts = [split.digest() for split in self.splits().values()] + list(self.class_names)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def shuffled_split(images: torch.Tensor, labels: torch.Tensor, sizes: tuple[int, ...], seed: int) -> list[Split]:
    """Shuffle with a fixed seed, then cut consecutive pieces of the given sizes."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    pieces, start = [], 0
    for size in sizes:
        index = order[start : start + size]
        pieces.append(Split(images[index].contiguous(), labels[index].contiguous()))
        start += size
    return pieces
