"""The search space, written in the sweep syntax of Hydra's stock Optuna sweeper.

`choice(a, b)` (or `a,b`) is categorical, `range(start, stop[, step])` an integer range (stop
excluded, as in Hydra), `interval(low, high)` a float interval and `tag(log, interval(...))`
its log-scaled twin. Overrides without a sweep are passed to every trial unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # parameter name -> distribution
    keys: dict[str, str]  # parameter name -> the override key as written (`+tags.x` keeps its `+`)
    fixed: list[str]  # overrides every trial gets as they are

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The command-line overrides of one trial."""
        return [*self.fixed, *(f"{self.keys[name]}={value}" for name, value in params.items())]


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if isinstance(value, RangeSweep):
        numbers = list(override.sweep_iterator())
        if all(isinstance(number, int) for number in numbers) and len(numbers) > 1:
            return IntDistribution(numbers[0], numbers[-1], step=numbers[1] - numbers[0])
        return CategoricalDistribution(numbers)
    if isinstance(value, IntervalSweep):
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_string_iterator()))
    raise ConfigError(f"{override.input_line}: not a search expression (choice, range, interval, tag(log, interval))")


def search_space(params: Mapping[str, str], arguments: list[str]) -> SearchSpace:
    """``hydra.sweeper.params`` and the command line's overrides (which win for the same key)."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as err:  # Hydra's parser raises its own error types with the bad line in the message
        raise ConfigError(str(err).splitlines()[0]) from None
    distributions: dict[str, BaseDistribution] = {}
    keys: dict[str, str] = {}
    fixed: dict[str, str] = {}
    for override in overrides:
        key = override.get_key_element()
        name = key.lstrip("+~")
        distributions.pop(name, None), fixed.pop(name, None)
        if override.is_sweep_override():
            distributions[name], keys[name] = _distribution(override), key
        else:
            fixed[name] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    if not distributions:
        raise ConfigError(
            "hydra.sweeper.params: nothing to search (give e.g. optimizer.lr='tag(log, interval(1e-4, 1e-2))')"
        )
    return SearchSpace(distributions, keys, list(fixed.values()))
