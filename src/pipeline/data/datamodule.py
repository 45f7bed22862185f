"""The DataModule base: in-memory splits served one batch per index fetch (no per-sample collate)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.data.augment import build_augmentation
from pipeline.data.splits import ImageSplits, Split

Batch = tuple[torch.Tensor, torch.Tensor]


class InMemoryImages(Dataset):
    """A split held as tensors. ``__getitems__`` lets the DataLoader slice a whole batch at once."""

    def __init__(self, split: Split, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Batch:
        image = self.split.images[index]
        return (self.transform(image) if self.transform else image), self.split.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices)
        images = self.split.images[index]
        if self.transform is not None:
            images = torch.stack([self.transform(image) for image in images])
        return images, self.split.labels[index]


def keep_batch(batch: Batch) -> Batch:
    """Collate function for InMemoryImages: the dataset already returns a stacked batch."""
    return batch


class ImageDataModule(pl.LightningDataModule):
    """Subclasses say where the images come from (``load_splits``); this class serves them."""

    def __init__(
        self,
        name: str,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        augment: Any,
    ) -> None:
        super().__init__()
        self.name, self.mean, self.std = name, list(mean), list(std)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.augment = augment

    def load_splits(self) -> ImageSplits:
        raise NotImplementedError

    @cached_property
    def splits(self) -> ImageSplits:
        """Loaded on first use, so a missing data set fails before a run is opened."""
        return self.load_splits()

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=keep_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        augmentation = None
        if self.augment.enabled:
            augment = self.augment
            augmentation = build_augmentation(
                self.splits.image_shape[1:], augment.degrees, augment.translate, augment.scale_min, augment.scale_max, augment.crop_padding
            )
        return self._loader(InMemoryImages(self.splits.train, augmentation), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(InMemoryImages(self.splits.val), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(InMemoryImages(self.splits.test), self.eval_batch_size, shuffle=False)
