"""The model of a config: its backbone (`model` section) behind the data's normalisation."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from pipeline.config.instantiate import safe_instantiate
from pipeline.models.normalize import Classifier


def build_model(cfg: DictConfig, image_shape: tuple[int, ...], num_classes: int) -> Classifier:
    """Backbones take the image shape and the class count; the classifier takes raw [0, 1] pixels."""
    backbone = safe_instantiate(
        cfg.model, "model", cfg.trusted_targets, input_shape=list(image_shape), num_classes=num_classes
    )
    return Classifier(backbone, mean=list(cfg.data.mean), std=list(cfg.data.std))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """The model summary a run records: all parameters, and those the optimizer trains."""
    return {
        "model/params": sum(parameter.numel() for parameter in model.parameters()),
        "model/trainable_params": sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad),
    }
