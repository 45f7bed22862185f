"""Instantiate config nodes only when every `_target_` in them is on the allowlist.

`hydra.utils.instantiate` only blocks a few names (os.remove, eval...); a config read back
from a shared store could otherwise name `torch.load` or `os.system`. The allowlist is the
exact set of targets that have a schema (pipeline.config.schema.TARGET_SCHEMAS).
"""

from __future__ import annotations

from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig

from pipeline.config.schema import TARGET_SCHEMAS
from pipeline.errors import ConfigError, PipelineError


def _refuse_unlisted_targets(node: Any, path: str) -> None:
    if isinstance(node, DictConfig):
        for key in node:
            child_path = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                target = node._get_node(key)._value()  # raw value: an interpolation is refused too
                if target not in TARGET_SCHEMAS:
                    raise ConfigError(f"{child_path}: target {target!r} is not on the allowlist")
            else:
                _refuse_unlisted_targets(node._get_node(key), child_path)
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            _refuse_unlisted_targets(node._get_node(index), f"{path}[{index}]")


def safe_instantiate(node: DictConfig, path: str, **kwargs: Any) -> Any:
    """Build ``node`` (found at ``path`` in the config, for error messages) with extra kwargs.

    A ValueError raised by the class itself (e.g. a patch size that does not tile the image)
    becomes a ConfigError: it is bad input, not a bug.
    """
    _refuse_unlisted_targets(node, path)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, PipelineError):
            raise cause from None
        if isinstance(cause, ValueError):  # a combination of values no schema check can see
            raise ConfigError(f"{path}: {cause}") from None
        raise
