"""Compose the training config from conf/ without running anything: for pre-flight checks and tests."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import CONF_DIR
from pipeline.config.validation import omegaconf_error_line, validate
from pipeline.errors import ConfigError, first_line


def _hydra_error_line(err: Exception) -> str:
    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")
        return f"{group}={name}: no such option (available: {', '.join(sorted(err.options))})"
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return omegaconf_error_line(cause)
    return first_line(str(err))


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config `pipeline-train <overrides>` would run, validated; ConfigError names the bad key."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_hydra_error_line(err)) from None
    return validate(cfg)
