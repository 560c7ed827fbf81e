"""Channel and group names: the rules, checked in one place.

Channels match ``^[a-zA-Z0-9\\-_.]+([?!][a-zA-Z0-9\\-_.]*)?$``, groups
``^[a-zA-Z0-9\\-_.]+$``, and both are under 100 characters. A channel containing ``!``
is process-specific: ``prefix!local`` is delivered through the reader of ``prefix!``.
"""

from __future__ import annotations

import re

from .exceptions import InvalidChannelName

#: Names must be shorter than this.
MAX_NAME_LENGTH = 100

_CHANNEL_RE = re.compile(r"[a-zA-Z0-9\-_.]+([?!][a-zA-Z0-9\-_.]*)?")
_GROUP_RE = re.compile(r"[a-zA-Z0-9\-_.]+")
_ALLOWED = "ASCII letters, digits, '-', '_' and '.'"
# Valid names seen before, so hot paths pay for a set lookup only.
_seen_channels: set[str] = set()
_seen_groups: set[str] = set()
_SEEN_LIMIT = 10_000


def validate_channel_name(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise InvalidChannelName."""
    if isinstance(name, str) and name in _seen_channels:
        return name
    name = _check_common(name)
    if not _CHANNEL_RE.fullmatch(name):
        raise InvalidChannelName(name, _channel_rule(name))
    _remember(_seen_channels, name)
    return name


def validate_group_name(name: object) -> str:
    """Return ``name`` if it is a valid group name, else raise InvalidChannelName."""
    if isinstance(name, str) and name in _seen_groups:
        return name
    name = _check_common(name)
    if not _GROUP_RE.fullmatch(name):
        raise InvalidChannelName(name, f"a group name may contain only {_ALLOWED}")
    _remember(_seen_groups, name)
    return name


def is_process_specific(name: str) -> bool:
    """True for ``prefix!local`` and ``prefix!`` names."""
    return "!" in name


def queue_name(name: str) -> str:
    """The name a layer stores ``name`` under: ``prefix!`` for ``prefix!local``."""
    bang = name.find("!")
    return name if bang < 0 else name[: bang + 1]


def validate_new_channel_prefix(prefix: object) -> str:
    """Check a ``new_channel`` prefix: a valid name ending in ``!`` or ``?``."""
    if not isinstance(prefix, str) or not prefix.endswith(("!", "?")):
        raise InvalidChannelName(prefix, "a new_channel prefix must be a str ending in '!' or '?'")
    return validate_channel_name(prefix)


def _check_common(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidChannelName(name, f"a name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidChannelName(name, "a name must not be empty")
    if len(name) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            name, f"a name must be under {MAX_NAME_LENGTH} characters, this has {len(name)}"
        )
    return name


def _channel_rule(name: str) -> str:
    marks = sum(name.count(mark) for mark in "!?")
    if marks > 1:
        return "a channel name may contain at most one '!' or '?'"
    if name[0] in "!?":
        return "a channel name must not start with '!' or '?'"
    return f"a channel name may contain only {_ALLOWED}, and one '!' or '?'"


def _remember(seen: set[str], name: str) -> None:
    if len(seen) >= _SEEN_LIMIT:
        seen.clear()
    seen.add(name)
