"""A schema for a user's class, read from its constructor: the checks a hand-written schema gives, unwritten.

Every named argument of ``__init__`` becomes a typed field (its annotation where OmegaConf can
check it, `Any` otherwise; its default where it can be written in YAML, required otherwise), so a
config for a user's backbone or DataModule gets the same one-line errors as a built-in: an unknown
key, a missing required argument, a value of the wrong type, a value outside a `Literal`.
``**kwargs`` are followed to the base class's ``__init__``, up to the framework's own classes
(torch, Lightning): a DataModule that passes ``**kwargs`` on to ImageDataModule takes its keys too.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Optional

from omegaconf import MISSING

from pipeline.config.schema import DataConfig
from pipeline.config.targets import PASSED_BY_THE_PIPELINE
from pipeline.errors import ConfigError

# Classes whose constructors are the framework's, not configuration: the walk along **kwargs stops there.
FRAMEWORK_MODULES = ("torch.", "pytorch_lightning.", "lightning.")
SCALARS = (bool, int, float, str)


def constructor_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments ``cls(...)`` takes, through ``**kwargs`` into its own base classes."""
    arguments: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if klass is object or klass.__module__.startswith(FRAMEWORK_MODULES):
            break
        try:
            signature = inspect.signature(klass.__init__, eval_str=True)
        except Exception:  # an annotation that only exists for type checkers: read them unevaluated
            signature = inspect.signature(klass.__init__)
        parameters = list(signature.parameters.values())[1:]  # without self
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                arguments.setdefault(parameter.name, parameter)
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return arguments


def config_type(annotation: Any) -> Any:
    """The OmegaConf type for an annotation: scalars, optionals and sequences of them; Any for the rest."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in SCALARS:
        return annotation
    if annotation is Path:
        return str
    if origin is Literal:
        return str if all(isinstance(arg, str) for arg in args) else Any
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        inner = config_type(rest[0]) if len(rest) == 1 else Any
        return Any if inner is Any else Optional[inner]  # noqa: UP045 (a type built at run time, for OmegaConf)
    if origin in (list, tuple, Sequence) and args:
        element = args[0]
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and len(set(args)) != 1:
            return Any  # a fixed-length tuple of mixed types
        return list[config_type(element)]
    return Any


def _writable(value: Any) -> bool:
    """A default that YAML can hold."""
    if value is None or isinstance(value, SCALARS):
        return True
    return isinstance(value, (list, tuple)) and all(item is None or isinstance(item, SCALARS) for item in value)


def _field(parameter: inspect.Parameter) -> tuple[str, Any, Any]:
    kind = config_type(parameter.annotation)
    default = parameter.default
    if default is parameter.empty or not _writable(default):  # a class or function default: the YAML sets it
        return parameter.name, kind, dataclasses.field(default=MISSING)
    if isinstance(default, (list, tuple)):
        return parameter.name, kind, dataclasses.field(default_factory=lambda: list(default))
    return parameter.name, kind, dataclasses.field(default=default)


def _literal_check(section: str, choices: dict[str, tuple[Any, ...]], base: type | None) -> Callable[[Any], None]:
    def check(self: Any) -> None:
        if base is not None:
            base.check(self)
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                options = ", ".join(repr(option) for option in allowed)
                raise ConfigError(f"{section}.{name}: must be one of {options}, got {value!r}")

    return check


def signature_schema(section: str, cls: type, keys: Sequence[str]) -> type:
    """A dataclass that checks a config of ``cls`` (whose keys are ``keys``) as the built-in schemas do."""
    arguments = constructor_arguments(cls)
    passed = PASSED_BY_THE_PIPELINE[section]
    target = f"{cls.__module__}.{cls.__qualname__}"
    for name in passed:
        if name in keys:
            raise ConfigError(f"{section}.{name}: set by the pipeline from the data; remove it from the config")
        if name not in arguments:
            raise ConfigError(
                f"{section}._target_: {target} must take {' and '.join(passed)} (the pipeline passes them)"
            )
    base = DataConfig if section == "data" else None
    for key in keys:
        if key != "_target_" and key not in arguments:
            takes = ", ".join(name for name in arguments if name not in passed)
            raise ConfigError(f"{section}.{key}: not an argument of {target} (it takes: {takes})")
    inherited = {field.name for field in dataclasses.fields(DataConfig) if field.name != "_target_"} if base else set()
    if unaccepted := sorted(inherited - set(arguments)):
        raise ConfigError(
            f"{section}._target_: {target} must take {', '.join(unaccepted)} (pass **kwargs on to ImageDataModule)"
        )
    fields, choices = [("_target_", str, dataclasses.field(default=MISSING))], {}
    for name, parameter in arguments.items():
        if name in passed or name in inherited:
            continue
        if parameter.default is not parameter.empty and not _writable(parameter.default) and name not in keys:
            continue  # a default YAML cannot hold (a class, a function): left to the constructor
        fields.append(_field(parameter))
        if typing.get_origin(parameter.annotation) is Literal:
            choices[name] = typing.get_args(parameter.annotation)
    return dataclasses.make_dataclass(
        f"{cls.__name__}Config",
        fields,
        bases=(base,) if base else (),
        namespace={"check": _literal_check(section, choices, base)},
    )
