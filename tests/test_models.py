"""Each backbone builds from its config for digits and colour images and classifies a batch."""

from __future__ import annotations

import pytest
import torch

from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.errors import ConfigError
from pipeline.models.normalize import Classifier

FAMILIES = ("cnn", "rnn", "transformer", "mlp")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_backbone_builds_for_any_image_shape(family: str, shape: tuple[int, int, int]) -> None:
    overrides = [f"model={family}"] + (
        ["model.tokens=patch", "model.patch_size=8"] if family == "transformer" and shape[1] == 32 else []
    )
    cfg = compose_config(overrides)
    backbone = safe_instantiate(cfg.model, "model", input_shape=list(shape), num_classes=7)
    model = Classifier(backbone, mean=[0.5] * shape[0], std=[0.25] * shape[0]).eval()
    logits = model(torch.rand(5, *shape))
    assert logits.shape == (5, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "overrides", [["model.cell=gru"], ["model.bidirectional=true", "model.num_layers=2", "model.dropout=0.1"]]
)
def test_rnn_variants(overrides: list[str]) -> None:
    cfg = compose_config(["model=rnn", *overrides])
    backbone = safe_instantiate(cfg.model, "model", input_shape=[1, 28, 28], num_classes=10)
    assert backbone(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_row_tokens_make_one_token_per_image_row() -> None:
    cfg = compose_config(["model=transformer", "model.tokens=row"])
    backbone = safe_instantiate(cfg.model, "model", input_shape=[1, 28, 28], num_classes=10)
    assert backbone.tokenize(torch.rand(2, 1, 28, 28)).shape == (2, 28, 28)
    assert backbone(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_patch_tokens_keep_every_pixel_once() -> None:
    cfg = compose_config(["model=transformer", "model.tokens=patch", "model.patch_size=7"])
    backbone = safe_instantiate(cfg.model, "model", input_shape=[1, 28, 28], num_classes=10)
    images = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28)
    tokens = backbone.tokenize(images)
    assert tokens.shape == (1, 16, 49)
    assert torch.equal(tokens[0, 0], images[0, 0, :7, :7].reshape(-1))
    assert torch.equal(tokens.flatten().sort().values, images.flatten())


def test_patch_that_does_not_tile_the_image_is_a_clear_error() -> None:
    cfg = compose_config(["model=transformer", "model.tokens=patch", "model.patch_size=5"])
    with pytest.raises(ConfigError, match=r"^model: model\.patch_size=5 does not divide the 28x28 image$"):
        safe_instantiate(cfg.model, "model", input_shape=[1, 28, 28], num_classes=10)


def test_normalisation_is_part_of_the_model() -> None:
    model = Classifier(torch.nn.Identity(), mean=[0.5], std=[0.25])
    assert torch.allclose(model(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))
    assert set(model.state_dict()) == {"0.mean", "0.std"}
