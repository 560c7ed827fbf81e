"""Checking the options every layer takes; a bad one is a ConfigurationError naming it."""

from __future__ import annotations

from collections.abc import Mapping

from ..exceptions import ConfigurationError, InvalidChannelName
from ..names import validate_group_name


def positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"layer option {name!r} must be a positive number, got {value!r}")
    return float(value)


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"layer option {name!r} must be a positive integer, got {value!r}")
    return value


def layer_prefix(value: object) -> str:
    try:
        return validate_group_name(value)
    except InvalidChannelName as exc:
        raise ConfigurationError(f"layer option 'prefix' got {value!r}: {exc.rule}") from None


def capacity_patterns(patterns: Mapping[str, int] | None) -> list[tuple[str, int]]:
    if patterns is None:
        return []
    if not isinstance(patterns, Mapping):
        raise ConfigurationError("layer option 'channel_capacity' must be a dict of glob: int")
    return [
        (str(glob), positive_int(f"channel_capacity[{glob!r}]", value))
        for glob, value in patterns.items()
    ]
