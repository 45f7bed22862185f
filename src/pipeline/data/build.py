"""The DataModule of a config (`data` section), checked against a stored run's data when there is one."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.config.instantiate import safe_instantiate
from pipeline.data.datamodule import ImageDataModule


def load_data(cfg: DictConfig, expected_digest: str | None) -> ImageDataModule:
    """Shuffled with the run's seed; a digest that differs from ``expected_digest`` is refused (DataError)."""
    datamodule = safe_instantiate(cfg.data, "data", cfg.trusted_targets, shuffle_seed=cfg.seed)
    datamodule.splits.check_digest(expected_digest)
    return datamodule
