"""Compose the training config from conf/ (for pre-flight checks and tests), or from a stored run's config.

Every command takes the same `key=value` overrides as `pipeline-train`: a group choice such as
`compression=quick` picks that file from conf/, and `tracking.uri=` / `paths.output_root=` say
which store to read a run from.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import CONF_DIR
from pipeline.config.targets import trust_composed_targets
from pipeline.config.validation import omegaconf_error_line, validate
from pipeline.errors import ConfigError, first_line


def _override_error_line(err: OverrideParseException) -> str:
    """`seed=1,,2: extraneous input ','`: the override as typed and the parser's reason, without its token set."""
    lines = [line for line in err.message.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Error parsing override", "See https://"))]
    reason = reasons[0] if reasons else "cannot be parsed"
    if reason.startswith("LexerNoViableAltException") and len(reasons) > 1 and "^" in reasons[1]:  # caret below
        position = reasons[1].index("^") - len("LexerNoViableAltException: ")
        reason = f"unexpected character {err.override[position : position + 1]!r} at position {position + 1}"
    reason = re.sub(r" expecting .*", "", reason)  # the grammar's token names say nothing to a user
    return f"{err.override}: {reason} (Hydra's override grammar: key=value, key=a,b,c for a sweep)"


def _hydra_error_line(err: Exception) -> str:
    if isinstance(err, OverrideParseException):
        return _override_error_line(err)
    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")
        options = sorted(option for option in err.options if not option.startswith("_"))  # _loader: a shared part
        return f"{group}={name}: no such option (available: {', '.join(options)})"
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return omegaconf_error_line(cause)
    return first_line(str(err))


@contextmanager
def _beside_a_running_app() -> Iterator[None]:
    """Hydra composes only while no app holds it: a multirun's end (its callback) sets the running one aside."""
    running = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        if running is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(running)


def _composed(overrides: Sequence[str], config_name: str = "train") -> DictConfig:
    """Hydra's composition of ``overrides``, not validated yet; ConfigError names the bad override."""
    try:
        with (
            _beside_a_running_app(),
            initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"),
        ):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_hydra_error_line(err)) from None


def _validated(cfg: DictConfig) -> DictConfig:
    trust_composed_targets(cfg)
    return validate(cfg)


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config `pipeline-train <overrides>` would run, validated; ConfigError names the bad key."""
    return _validated(_composed(overrides, config_name))


MAX_SWEEP_CHECKS = 50  # composes of ~0.1 s each before a sweep starts; a larger grid's remaining values: its trials


def sweep_combinations(overrides: Sequence[str]) -> list[list[str]]:
    """The single-run override lists that stand for a sweep's command line (`pipeline-train -m ...`).

    The first combination of the grid, then each other value of each swept key in it, so every value
    the command line names is composed once. Interval sweeps (Optuna's) keep the config's value, and
    Hydra's own keys are left to Hydra. A grid of more than MAX_SWEEP_CHECKS values is checked in part.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(_hydra_error_line(err)) from None
    slots: list[list[str]] = []  # in the command line's order: one override, or each value of a swept key
    for override in parsed:
        if override.key_or_group.startswith("hydra") or override.value_type == ValueType.INTERVAL_SWEEP:
            continue
        key = override.get_key_element()
        values = override.sweep_string_iterator() if override.is_sweep_override() else None  # written as overrides
        slots.append([f"{key}={value}" for value in values] if values is not None else [override.input_line])
    first = [choices[0] for choices in slots]
    combinations = [first]
    for position, choices in enumerate(slots):
        combinations += [[*first[:position], choice, *first[position + 1 :]] for choice in choices[1:]]
    return combinations[:MAX_SWEEP_CHECKS]


def sweep_configs(overrides: Sequence[str]) -> list[DictConfig]:
    """The validated configs of the runs that stand for a sweep (`sweep_combinations`); ConfigError names the bad key.

    The first combination is composed; one that differs from it only in plain values (`seed=2`: not
    a group choice, not `+key=`, not a list or mapping, a key no other override touches) is those
    values set in a copy of it, as Hydra's composition sets them (`OmegaConf.update`): ~0.06 s
    instead of ~0.3 s of composing the whole config folder again, per value of a grid.
    """
    combinations = sweep_combinations(overrides)
    first = _composed(combinations[0])
    configs = [_validated(copy.deepcopy(first))]
    for combination in combinations[1:]:
        changed = [
            override for override, before in zip(combination, combinations[0], strict=True) if override != before
        ]
        values = [_plain_value(override, combination) for override in changed]
        if any(value is None for value in values):
            configs.append(compose_config(combination))
            continue
        cfg = copy.deepcopy(first)
        try:
            for key, value in values:
                OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as err:
            raise ConfigError(omegaconf_error_line(err)) from None
        configs.append(_validated(cfg))
    return configs


def _plain_value(override: str, combination: Sequence[str]) -> tuple[str, object] | None:
    """(key, value) of an override that sets one scalar value no other override of ``combination`` touches (the
    key, a section above it or a key below it: Hydra applies them in order); None for anything else."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    key, value = parsed.key_or_group, parsed.value()
    plain = not (parsed.is_add() or parsed.is_force_add() or parsed.is_delete() or parsed.package is not None)
    if not plain or _is_group_choice(override) or "/" in key or isinstance(value, dict | list):
        return None
    others = [other.split("=", 1)[0].lstrip("+~").replace("/", ".") for other in combination if other != override]
    if any("@" in other for other in others):  # a config placed in another package: where it lands is Hydra's
        return None
    if any(other == key or key.startswith(f"{other}.") or other.startswith(f"{key}.") for other in others):
        return None
    return key, value


def _is_group_choice(override: str) -> bool:
    """`compression=quick`: a key without dots that names a config group folder under conf/."""
    key = override.split("=", 1)[0]
    return "." not in key and key != "hydra" and (CONF_DIR / key).is_dir()


# sections whose keys every run has, whatever model, data, optimizer or scheduler it used
SHARED_SECTIONS = ("trainer", "tracking", "compression", "interpret", "sweep", "paths", "seed", "run_name", "tags")


def store_location(overrides: Sequence[str]) -> tuple[str | None, Path]:
    """The `tracking.uri` and `paths.output_root` these overrides give (the defaults' where they say nothing).

    The overrides that can be checked without the stored run (group choices, keys of the shared
    sections) are checked first: a typo is reported before the store is read.
    """
    shared = [
        o for o in overrides if _is_group_choice(o) or o.split("=", 1)[0].lstrip("+~").split(".")[0] in SHARED_SECTIONS
    ]
    cfg = compose_config(shared)
    return cfg.tracking.uri, Path(cfg.paths.output_root)


def _fill_absent(stored: DictConfig, defaults: DictConfig) -> None:
    """Copy into ``stored`` every key of ``defaults`` it lacks, recursively; sections of another kind are left alone."""
    if isinstance(stored.get("_target_"), str) and stored.get("_target_") != defaults.get("_target_"):
        return  # e.g. a stored RNN model: the default CNN's keys are not its keys
    for key, value in defaults.items():
        if key not in stored:
            stored[key] = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
        elif isinstance(value, DictConfig) and isinstance(stored[key], DictConfig):
            _fill_absent(stored[key], value)


def with_settings_added_since(cfg: DictConfig) -> DictConfig:
    """A stored config with the sections and keys a later pipeline added (`interpret`, `trainer.compile`) at their defaults.

    A run stored before they existed is still rerun, resumed, evaluated, compressed and served by
    this code. Every added default keeps what the code did before the setting existed. Where the
    code runs without conf/ (a served int8 model's own environment), the config is the one that
    code stored, and is returned as it is.
    """
    if CONF_DIR.is_dir():
        _fill_absent(cfg, compose_config())
    return cfg


def stored_config(config_yaml: str, overrides: Sequence[str]) -> DictConfig:
    """A config read back from a store with overrides applied (validated later by `validate`).

    ``key=value`` sets a key (its value read as YAML, as OmegaConf reads a dot list: the commands add
    `tracking.uri=` and `paths.output_root=` with the store's path as it is, which Hydra's grammar
    could refuse); ``group=option`` replaces the whole section with conf/group/option.yaml.
    """
    try:
        cfg = with_settings_added_since(OmegaConf.create(config_yaml))
        for choice in filter(_is_group_choice, overrides):
            group = choice.split("=", 1)[0]
            cfg[group] = OmegaConf.to_container(compose_config([choice])[group])
        dotted = [override for override in overrides if not _is_group_choice(override)]
        return OmegaConf.merge(cfg, *(_dotted_value(override) for override in dotted)) if dotted else cfg
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_error_line(err)) from None


def _dotted_value(override: str) -> DictConfig:
    """`key=value` as a config; a value YAML cannot read is one line naming the override. Hydra's `+key=`
    and `++key=` (add a key) read as `key=`: a stored config is plain data, where setting a key adds it."""
    try:
        return OmegaConf.from_dotlist([override.removeprefix("++").removeprefix("+")])
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or first_line(str(err))
        raise ConfigError(f"{override}: not a value YAML can read ({problem})") from None
