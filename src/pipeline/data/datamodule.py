"""The DataModule base: in-memory splits served one batch per index fetch (no per-sample collate)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.data.augment import build_augmentation
from pipeline.data.splits import ImageSplits, Split

Batch = tuple[torch.Tensor, torch.Tensor]


class InMemoryImages(Dataset):
    """A split held as tensors. ``__getitems__`` lets the DataLoader slice a whole batch at once."""

    def __init__(self, split: Split, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
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


class EpochShuffle(Sampler[int]):
    """A shuffle whose order, and the epoch's random state, depend only on (seed, epoch).

    Lightning calls ``set_epoch`` before it creates each epoch's iterator, and ``__iter__``
    runs when the epoch's first batch is fetched, before any training step of the epoch.
    Reseeding the global RNGs there (dropout, augmentation in the main process) and the
    workers' base seed in ``set_epoch`` makes a run resumed from a checkpoint train exactly
    as an uninterrupted one: nothing depends on how the process reached the epoch.

    Under DDP each of ``world_size`` ranks takes every ``world_size``-th index of the same
    permutation, cut to an equal count (ranks must take the same number of optimizer steps).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.rank, self.world_size = rank, world_size
        self.worker_seeds = torch.Generator()  # the DataLoader draws its workers' base seed here
        self.set_epoch(0)

    def _epoch_seed(self) -> int:
        return (self.seed * 1_000_003 + self.epoch) % 2**63

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.worker_seeds.manual_seed(self._epoch_seed())

    def __iter__(self) -> Iterator[int]:
        seed = self._epoch_seed()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))
        return iter(order[self.rank :: self.world_size][: len(self)].tolist())

    def __len__(self) -> int:
        return self.size // self.world_size


class EvaluationShard(Sampler[int]):
    """Every ``world_size``-th image from ``rank``, unpadded: across ranks each image counts once.

    (Lightning's DistributedSampler pads the shards with repeated images to equal lengths.)
    """

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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
        shuffle_seed: int,
    ) -> None:
        """``shuffle_seed`` is the run's training seed (the data set's own split seed is separate)."""
        super().__init__()
        self.shuffle_seed = shuffle_seed
        self.name, self.mean, self.std = name, list(mean), list(std)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.augment = augment

    def load_splits(self) -> ImageSplits:
        raise NotImplementedError

    @cached_property
    def splits(self) -> ImageSplits:
        """Loaded on first use, so a missing data set fails before a run is opened."""
        return self.load_splits()

    def _rank_and_world_size(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        """Shuffled or in order; sharded by rank under DDP (the Trainer runs with use_distributed_sampler=False)."""
        rank, world_size = self._rank_and_world_size()
        sampler: Sampler[int] | None = None
        if shuffle:
            sampler = EpochShuffle(len(dataset), self.shuffle_seed, rank, world_size)
        elif world_size > 1:
            sampler = EvaluationShard(len(dataset), rank, world_size)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            generator=sampler.worker_seeds if isinstance(sampler, EpochShuffle) else None,
            num_workers=self.num_workers,
            collate_fn=keep_batch,
            # workers restart each epoch so their seeds follow the epoch (see EpochShuffle)
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        augmentation = None
        if self.augment.enabled:
            augment = self.augment
            augmentation = build_augmentation(
                self.splits.image_shape[1:],
                augment.degrees,
                augment.translate,
                augment.scale_min,
                augment.scale_max,
                augment.crop_padding,
            )
        # data.batch_size is the global batch: under DDP each rank takes its share of it, so a
        # run on N devices takes the same optimizer steps as one on a single device
        _, world_size = self._rank_and_world_size()
        return self._loader(
            InMemoryImages(self.splits.train, augmentation), self.batch_size // world_size, shuffle=True
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(InMemoryImages(self.splits.val), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(InMemoryImages(self.splits.test), self.eval_batch_size, shuffle=False)
