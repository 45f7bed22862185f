"""Validate a training config (composed by Hydra or read back from a store) against the schema."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config.schema import SECTION_SCHEMAS, TARGET_SCHEMAS, DataConfig, TrainConfig
from pipeline.config.signatures import signature_schema
from pipeline.config.targets import USER_TARGET_BASES, check_trusted_targets, check_user_target_trusted, user_class
from pipeline.errors import ConfigError, first_line


def omegaconf_error_line(err: OmegaConfBaseException, prefix: str = "") -> str:
    """One line from an OmegaConf error: the full key, then the message without its dump."""
    key = getattr(err, "full_key", None) or ""
    full_key = f"{prefix}.{key}" if prefix and key else (key or prefix)
    message = first_line(getattr(err, "msg", None) or str(err))
    return f"{full_key}: {message}" if full_key else message


def _check_targets_are_literal(cfg: DictConfig) -> None:
    """A `_target_` built from an interpolation could point anywhere once resolved: refuse it."""
    for section in SECTION_SCHEMAS:
        node = OmegaConf.select(cfg, section, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and "_target_" in node and OmegaConf.is_interpolation(node, "_target_"):
            raise ConfigError(f"{section}._target_: interpolations are not allowed in _target_")


def _check_targets_only_where_allowed(plain: Any, path: str = "") -> None:
    """`_target_` builds an object: only the sections in SECTION_SCHEMAS may name one (a stored config could try elsewhere)."""
    if not isinstance(plain, dict):
        return
    if "_target_" in plain and path not in SECTION_SCHEMAS:
        raise ConfigError(
            f"{path + '.' if path else ''}_target_: not allowed here (only {', '.join(SECTION_SCHEMAS)} build objects)"
        )
    for key, value in plain.items():
        _check_targets_only_where_allowed(value, f"{path}.{key}" if path else str(key))


def _lookup(plain: Any, dotted_key: str) -> Any:
    for part in dotted_key.split("."):
        plain = plain.get(part) if isinstance(plain, dict) else None
    return plain


LOADER_KEYS = {field.name for field in dataclasses.fields(DataConfig)} - {"_target_"}


def _section_schema(section: str, node: dict[str, Any], trusted: list[str]) -> type:
    """The built-in schema of the section's target, or one read from a trusted user class's signature."""
    target = node["_target_"]
    allowed = {schema._target_ for schema in SECTION_SCHEMAS[section]}  # type: ignore[attr-defined]
    if target in allowed:
        return TARGET_SCHEMAS[target]
    if section not in USER_TARGET_BASES or target in TARGET_SCHEMAS:
        raise ConfigError(f"{section}._target_: {target!r} is not allowed here (allowed: {', '.join(sorted(allowed))})")
    check_user_target_trusted(section, target, trusted)  # before the import: a refused name runs nothing
    return signature_schema(section, user_class(section, target), list(node))


def _typed_section(section: str, node: Any, trusted: list[str]) -> DictConfig:
    if not isinstance(node, dict) or "_target_" not in node:
        raise ConfigError(f"{section}: needs a _target_ naming what to build")
    schema = _section_schema(section, node, trusted)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_error_line(err, section)) from None
    if missing := sorted(OmegaConf.missing_keys(typed)):
        loader = section == "data" and missing[0].split(".")[0] in LOADER_KEYS
        hint = " (a data YAML takes the pipeline's loader keys with `defaults: [_loader, _self_]`)" if loader else ""
        raise ConfigError(f"{section}.{missing[0]}: missing required argument of {node['_target_']}{hint}")
    return typed


def _run_checks(obj: Any) -> None:
    """Call every dataclass's ``check()`` depth first, so the innermost key is named."""
    if not dataclasses.is_dataclass(obj):
        return
    for field in dataclasses.fields(obj):
        _run_checks(getattr(obj, field.name))
    check = getattr(obj, "check", None)
    if check is not None:
        check()


def _check_student_model(plain: dict, trusted: list[str]) -> None:
    """`compression.student_model.<family>` of the run's model family: each key one of the model's own
    arguments, and the student's section as valid as the model's (a bad value fails now, not after training)."""
    model = plain["model"]
    family = model["_target_"].rsplit(".", 1)[-1]
    changes = (_lookup(plain, "compression.student_model") or {}).get(family) or {}
    if not changes:
        return  # the student is the model's section narrowed, checked with the model
    key = f"compression.student_model.{family}"
    for name in changes:
        if name not in model:
            raise ConfigError(f"{key}.{name}: not an argument of model {model['_target_']}")
    try:
        _run_checks(OmegaConf.to_object(_typed_section("model", {**model, **changes}, trusted)))
    except ConfigError as err:
        raise ConfigError(str(err).replace("model.", f"{key}.", 1)) from None


def validate(cfg: DictConfig) -> DictConfig:
    """Return a resolved, typed copy of ``cfg`` or raise ConfigError naming the first bad key."""
    _check_targets_are_literal(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: missing value (set it on the command line, e.g. {missing[0]}=...)")
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        _check_targets_only_where_allowed(plain)
        typed = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_error_line(err)) from None
    check_trusted_targets(list(typed.trusted_targets))
    for section in SECTION_SCHEMAS:
        node = _lookup(plain, section)
        if section == "scheduler" and node is None:
            continue  # no learning-rate schedule
        OmegaConf.update(typed, section, _typed_section(section, node, list(typed.trusted_targets)), merge=False)
    try:
        _run_checks(OmegaConf.to_object(typed))
        _check_student_model(plain, list(typed.trusted_targets))
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_error_line(err)) from None
    OmegaConf.set_readonly(typed, True)
    return typed
