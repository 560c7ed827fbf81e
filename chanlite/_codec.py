"""The message codec: content dicts to bytes and back, with orjson.

Content is a dict of JSON types plus ``bytes``. It round-trips exactly: bytes stay
bytes, str stays str, tuples become lists. Anything else is refused with
``TypeError``, including what orjson would quietly turn into something else (enum
members other than ``IntEnum``/``StrEnum``, UUIDs) and content that contains itself.
``bytes`` travel as a one-key object ``{"\\u0000b": "<base64>"}``; a content dict may
therefore not use the key ``"\\x00b"`` itself (it is refused with ``TypeError``).

The size limit counts ``bytes`` values at their raw length, so a 1 MiB WebSocket frame
and a 1 MiB message mean the same thing.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

import orjson

from .exceptions import MessageTooLarge

#: Encoded size limit of one message (bytes values counted at their raw length).
MESSAGE_SIZE_LIMIT = 1024 * 1024

# The reserved key that tags a base64-encoded bytes value.
_BYTES_KEY = "\x00b"
_BYTES_MARKER = b'"\\u0000b"'
# Every tagged value costs this much beyond its base64 text: {"\u0000b":""}
_TAG_OVERHEAD = len(b'{"\\u0000b":""}')
_SCALARS = (str, int, float, bool, type(None), bytes)
# datetimes and dataclasses would silently become str/dict: send them to the hook,
# which refuses them like any other type a message cannot carry.
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Leaf types orjson writes as themselves. It writes enum members and UUIDs too, as
# their value and as a str, without asking the hook and with no option to stop it:
# _only_kept finds them after the fact, so they are refused rather than changed.
_KEPT = frozenset({str, int, float, bool, type(None), bytes, bytearray, memoryview})
# orjson refuses content nested deeper than this (the top-level dict counts as 1).
_MAX_DEPTH = 254


class _BytesTagger:
    """orjson ``default`` hook that tags bytes and keeps count of what it did."""

    __slots__ = ("count", "overhead")

    def __init__(self) -> None:
        self.count = 0
        self.overhead = 0

    def __call__(self, value: object) -> object:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            text = base64.b64encode(raw).decode("ascii")
            self.count += 1
            self.overhead += len(text) + _TAG_OVERHEAD - len(raw)
            return {_BYTES_KEY: text}
        raise TypeError


def encode(content: object, *, limit: int = MESSAGE_SIZE_LIMIT) -> bytes:
    """Encode ``content`` for a layer.

    Raises ``TypeError`` if ``content`` is not a dict or holds a value that cannot be
    encoded (the message names the key path), and :class:`MessageTooLarge` if the
    encoded message is over ``limit`` bytes.
    """
    if not isinstance(content, dict):
        raise TypeError(f"message content must be a dict, not {type(content).__name__}")
    tagger = _BytesTagger()
    try:
        data = orjson.dumps(content, default=tagger, option=_DUMPS_OPTIONS)
    except TypeError as exc:
        raise TypeError(_describe_unencodable(content) or f"message content: {exc}") from None
    if not _only_kept(content):
        raise TypeError(_describe_unencodable(content) or "message content cannot be carried")
    if b"null" in data:
        # orjson writes NaN and infinities as null; refuse them rather than change them.
        problem = _find_non_finite(content, "content")
        if problem:
            raise TypeError(problem)
    if data.count(_BYTES_MARKER) != tagger.count:
        _refuse_reserved_key(content, "content")
    size = len(data) - tagger.overhead
    if size > limit:
        raise MessageTooLarge(size, limit)
    return data


def decode(data: bytes) -> dict[str, Any]:
    """Decode bytes made by :func:`encode` back into the original content."""
    content: dict[str, Any] = orjson.loads(data)
    if _BYTES_MARKER in data:
        return _untag(content)  # type: ignore[no-any-return]
    return content


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _BYTES_KEY in value:
            return _b64decode(value[_BYTES_KEY])
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def _b64decode(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("corrupt bytes value in an encoded message")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"corrupt bytes value in an encoded message: {exc}") from None


def _refuse_reserved_key(value: object, path: str) -> None:
    if isinstance(value, Mapping):
        if _BYTES_KEY in value:
            raise TypeError(f"{path} uses the reserved key '\\x00b'")
        for key, item in value.items():
            _refuse_reserved_key(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_reserved_key(item, f"{path}[{index}]")


def _only_kept(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> bool:
    """True if every leaf inside ``value`` is of a type orjson writes as itself."""
    for item in value.values() if isinstance(value, dict) else value:
        if type(item) in _KEPT:
            continue
        if isinstance(item, (dict, list, tuple)):
            if not _only_kept(item):
                return False
        elif not isinstance(item, (str, int)):  # IntEnum and StrEnum members are kept
            return False
    return True


def _describe_unencodable(value: object, path: str = "content", depth: int = 1) -> str | None:
    """Find the first value orjson could not encode and say where it is."""
    if isinstance(value, (dict, list, tuple)) and depth > _MAX_DEPTH:
        return f"content is nested more than {_MAX_DEPTH} levels deep, or contains itself"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key of type {type(key).__name__} ({key!r}); keys must be str"
            if not _is_utf8(key):
                return f"{path} has a key {key!r} that is not valid UTF-8 (a lone surrogate)"
            found = _describe_unencodable(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _describe_unencodable(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return f"{path} is an integer outside the 64-bit range"
    if isinstance(value, str) and not _is_utf8(value):
        return f"{path} is a str that is not valid UTF-8 (a lone surrogate)"
    if isinstance(value, (*_SCALARS, bytearray, memoryview)):
        return None
    return f"{path} is of type {type(value).__name__}, which a message cannot carry"


def _find_non_finite(value: object, path: str) -> str | None:
    """Say where the first NaN or infinite float is, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which a message cannot carry"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _find_non_finite(item, f"{path}[{key!r}]")
        if found:
            return found
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
