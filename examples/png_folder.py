"""A DataModule for a folder of labelled PNG images, one sub-folder per class (``root/<class>/*.png``).

The contract (docs/own-code.md): subclass ``ImageDataModule``, pass ``**loader`` on to it (batch
sizes, workers, normalisation, augmentation and the run's shuffle seed come from the pipeline's
`data/_loader.yaml`), and implement ``load_splits()``: train, validation and test images as float
tensors in [0, 1] (N x C x H x W) with int64 labels, and the class names. The pipeline serves the
batches (seeded shuffle, DDP shards), and reads the splits for the data digest, figures and compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torchvision.io import ImageReadMode, decode_png, read_file
from torchvision.transforms.v2.functional import resize

from pipeline.data.datamodule import ImageDataModule
from pipeline.data.splits import ImageSplits, shuffled_split
from pipeline.errors import DataError


class PngFolder(ImageDataModule):
    """Every PNG under ``root/<class>/``, resized to ``image_size``, split at random (``split_seed``) by fractions."""

    def __init__(
        self,
        root: str,
        image_size: Sequence[int] = (28, 28),
        color: Literal["gray", "rgb"] = "gray",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.root, self.image_size, self.color = Path(root), [int(size) for size in image_size], color
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def _read(self, path: Path) -> torch.Tensor:
        mode = ImageReadMode.GRAY if self.color == "gray" else ImageReadMode.RGB
        try:
            image = decode_png(read_file(str(path)), mode=mode)
        except RuntimeError as err:
            raise DataError(f"data.root: {path} is not a readable PNG ({str(err).splitlines()[0]})") from None
        if list(image.shape[1:]) != self.image_size:
            image = resize(image, self.image_size, antialias=True)
        return image

    def load_splits(self) -> ImageSplits:
        if not self.root.is_dir():
            raise DataError(f"data.root: {self.root} is not a folder")
        classes = sorted(folder.name for folder in self.root.iterdir() if folder.is_dir())
        files = [
            (path, label) for label, name in enumerate(classes) for path in sorted((self.root / name).glob("*.png"))
        ]
        if len(classes) < 2 or not files:
            raise DataError(f"data.root: {self.root} needs a sub-folder of PNG images per class, at least two classes")
        images = torch.stack([self._read(path) for path, _ in files]).float().div_(255.0)
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        val_size = max(1, round(len(files) * self.val_fraction))
        test_size = max(1, round(len(files) * self.test_fraction))
        train_size = len(files) - val_size - test_size
        if train_size < 1:
            raise DataError(f"data.root: {len(files)} images leave none for training after validation and test")
        train, val, test = shuffled_split(images, labels, (train_size, val_size, test_size), self.split_seed)
        return ImageSplits(train, val, test, tuple(classes))
