"""Instantiate config nodes only when every `_target_` in them is built in or trusted.

`hydra.utils.instantiate` only blocks a few names (os.remove, eval...); a config read back
from a shared store could otherwise name `torch.load` or `os.system`. Built in: the targets
that have a schema (pipeline.config.schema.TARGET_SCHEMAS); trusted: the config's
`trusted_targets`, less pipeline.config.targets.NEVER_TRUSTED. Validation checks the same
before it imports a user's class; this is the last guard before anything is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig

from pipeline.config.targets import trusts
from pipeline.errors import ConfigError, PipelineError


def _refuse_untrusted_targets(node: Any, path: str, trusted: Sequence[str]) -> None:
    if isinstance(node, DictConfig):
        for key in node:
            child_path = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                target = node._get_node(key)._value()  # raw value: an interpolation is refused too
                if not isinstance(target, str) or not trusts(trusted, target):
                    raise ConfigError(f"{child_path}: target {target!r} is neither built in nor trusted")
            else:
                _refuse_untrusted_targets(node._get_node(key), child_path, trusted)
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            _refuse_untrusted_targets(node._get_node(index), f"{path}[{index}]", trusted)


def safe_instantiate(node: DictConfig, path: str, trusted: Sequence[str] = (), **kwargs: Any) -> Any:
    """Build ``node`` (found at ``path`` in the config, for error messages) with extra kwargs.

    ``trusted`` is the config's `trusted_targets`: what it may build besides the built-ins.
    A ValueError raised by the class itself (e.g. a patch size that does not tile the image)
    becomes a ConfigError: it is bad input, not a bug.
    """
    _refuse_untrusted_targets(node, path, trusted)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, PipelineError):
            raise cause from None
        if isinstance(cause, ValueError):  # a combination of values no schema check can see
            raise ConfigError(f"{path}: {cause}") from None
        raise
