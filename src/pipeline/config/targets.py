"""Which `_target_` a config may build: the built-ins, the user's own code, and never a few dangerous names.

A training config names the classes it builds. The built-in targets have hand-written schemas
(pipeline.config.schema). A user's own backbone or DataModule (`model` and `data` sections only)
is checked against its constructor's signature instead (pipeline.config.signatures), so bringing
one needs no edit of the package.

Trust: a config composed from your own command line and config folders is trusted, and the
targets it composed are recorded in its `trusted_targets`. A config read back from a store
(rerun, resume, compress, a served model) builds only the built-ins and what its
`trusted_targets` names, and never anything under NEVER_TRUSTED, whatever that list says.
The check runs before the target's module is imported, so a refused name executes nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, read_write

from pipeline.config.schema import TARGET_SCHEMAS
from pipeline.errors import ConfigError, first_line

# Names a stored config could use to run code or read pickles: refused even when listed as trusted.
NEVER_TRUSTED = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "shutil",
    "sys",
    "importlib",
    "runpy",
    "ctypes",
    "socket",
    "pickle",
    "marshal",
    "shelve",
    "dill",
    "joblib",
    "torch.load",
    "torch.hub",
)

# The sections that may build a user's own class, and the class it must derive from (a dotted
# name, so checking it imports nothing until a user target is actually there).
USER_TARGET_BASES = {
    "model": "torch.nn.Module",
    "data": "pipeline.data.datamodule.ImageDataModule",
}

# What a class that fails the contract is told to do (docs/own-code.md has the whole contract).
CONTRACT_HINTS = {
    "model": "a backbone is an nn.Module that takes input_shape and num_classes",
    "data": "the pipeline reads its splits for digests, figures and compression: subclass it, "
    "pass **kwargs on to it and implement load_splits()",
}

# What the pipeline passes to each section's class itself: never set in the config.
PASSED_BY_THE_PIPELINE = {
    "model": ("input_shape", "num_classes"),
    "data": ("shuffle_seed",),
}


def _covers(prefix: str, name: str) -> bool:
    """``prefix`` names ``name`` or a module or class that contains it (`my_models` covers `my_models.ResNet8`)."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def never_trusted(target: str) -> bool:
    return any(_covers(never, target) for never in NEVER_TRUSTED)


def check_trusted_targets(trusted: Sequence[str]) -> None:
    """A `trusted_targets` entry may not name, lie under, or contain anything on NEVER_TRUSTED."""
    for entry in trusted:
        name = entry.rstrip(".")
        refused = [never for never in NEVER_TRUSTED if not name or _covers(name, never) or _covers(never, name)]
        if refused:
            raise ConfigError(f"trusted_targets: {entry!r} would trust {refused[0]}, which is never trusted")


def trusts(trusted: Sequence[str], target: str) -> bool:
    """Built in, or named (itself or its module) by ``trusted``, and never on NEVER_TRUSTED."""
    if target in TARGET_SCHEMAS:
        return True
    return not never_trusted(target) and any(_covers(entry, target) for entry in trusted)


def check_user_target_trusted(section: str, target: str, trusted: Sequence[str]) -> None:
    """Refuse, before anything is imported, a user target the config does not trust."""
    if never_trusted(target):
        raise ConfigError(f"{section}._target_: {target!r} is never built (it could run any code)")
    if not trusts(trusted, target):
        raise ConfigError(
            f"{section}._target_: {target!r} is not trusted by this config "
            f"(name it or its module in trusted_targets to build it from a stored config)"
        )


def locate(target: str, section: str) -> Any:
    """Import the object a dotted name points to; one line naming the section if it does not import."""
    module_name, attributes = target, []
    while module_name:
        try:
            found: Any = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as err:
            if err.name is None or not _covers(err.name, module_name):
                raise ConfigError(f"{section}._target_: cannot import {target!r} ({first_line(str(err))})") from None
            module_name, _, attribute = module_name.rpartition(".")
            attributes.insert(0, attribute)
        except Exception as err:  # the user's module itself failed while importing
            raise ConfigError(
                f"{section}._target_: importing {module_name!r} failed: {type(err).__name__}: {first_line(str(err))}"
            ) from None
    else:
        raise ConfigError(
            f"{section}._target_: cannot import {target!r} (no such module; run from the folder that holds it, "
            f"or put it on PYTHONPATH)"
        )
    for attribute in attributes:
        if not hasattr(found, attribute):
            raise ConfigError(f"{section}._target_: cannot import {target!r} ({found.__name__!r} has no {attribute!r})")
        found = getattr(found, attribute)
    return found


def user_class(section: str, target: str) -> type:
    """The user's class a section names, checked against the contract of that section."""
    found = locate(target, section)
    base_name = USER_TARGET_BASES[section]
    base = locate(base_name, section)
    if not (isinstance(found, type) and issubclass(found, base)):
        what = "" if isinstance(found, type) else f" (it is a {type(found).__name__}, not a class)"
        raise ConfigError(
            f"{section}._target_: {target!r} is not a subclass of {base_name}{what}; {CONTRACT_HINTS[section]}"
        )
    return found


def trust_composed_targets(cfg: DictConfig) -> None:
    """Record the user targets of a config composed here (trusted) in its `trusted_targets`, for later reruns."""
    trusted = list(cfg.get("trusted_targets") or [])
    for section in USER_TARGET_BASES:
        node = cfg.get(section)
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if (
            isinstance(target, str)
            and not never_trusted(target)  # refused with its own line when the section is checked
            and not trusts(trusted, target)
        ):
            trusted.append(target)
    if trusted != list(cfg.get("trusted_targets") or []):
        with read_write(cfg):
            cfg.trusted_targets = trusted
