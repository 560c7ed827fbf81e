"""The message codec: exact round-trips, precise refusals, and the 1 MiB limit."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from chanlite import MessageTooLarge
from chanlite._codec import MESSAGE_SIZE_LIMIT, decode, encode

MIB = 1024 * 1024


def roundtrip(content: dict[str, Any]) -> dict[str, Any]:
    return decode(encode(content))


def test_limit_is_one_mib() -> None:
    assert MESSAGE_SIZE_LIMIT == MIB


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"text": "hello"},
        {"bytes": b"\x00\x01binary\xff"},
        {"empty_bytes": b"", "empty_str": ""},
        {"n": 1, "f": 1.5, "t": True, "no": False, "none": None, "neg": -(2**63)},
        {"big": 2**64 - 1},
        {"unicode": "héllo wörld ☃ 😀 中文", "ключ": "значение"},
        {"nested": {"list": [1, "two", b"three", {"deep": [b"", [b"\xfe"]]}]}},
        {"looks_tagged": {"b": "not bytes"}, "null_text": "null"},
    ],
    ids=[
        "empty",
        "str",
        "bytes",
        "empty-values",
        "scalars",
        "u64",
        "unicode",
        "nested",
        "lookalike",
    ],
)
def test_content_round_trips_exactly(content: dict[str, Any]) -> None:
    result = roundtrip(content)
    assert result == content
    assert _types(result) == _types(content)


def _types(value: Any) -> Any:
    """The shape of ``value`` with its leaf types, so bytes/str mix-ups show."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


def test_non_utf8_bytes_stay_bytes() -> None:
    raw = bytes(range(256))
    result = roundtrip({"payload": raw})
    assert result["payload"] == raw
    assert isinstance(result["payload"], bytes)


def test_str_stays_str_even_if_it_looks_like_base64() -> None:
    result = roundtrip({"text": "aGVsbG8="})
    assert result["text"] == "aGVsbG8="
    assert isinstance(result["text"], str)


def test_bytearray_comes_back_as_bytes() -> None:
    result = roundtrip({"data": bytearray(b"abc")})
    assert result == {"data": b"abc"}
    assert type(result["data"]) is bytes


def test_tuples_become_lists() -> None:
    result = roundtrip({"pair": ("a", 1), "nested": [("x", (b"y",))]})
    assert result == {"pair": ["a", 1], "nested": [["x", [b"y"]]]}


@pytest.mark.parametrize("content", [[1, 2], "text", b"bytes", None, 42, ("a", 1)])
def test_non_dict_content_is_a_type_error(content: object) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        encode(content)


def test_unserializable_value_names_the_key_path() -> None:
    with pytest.raises(TypeError) as info:
        encode({"a": [1, {"b": object()}]})
    assert "content['a'][1]['b']" in str(info.value)
    assert "object" in str(info.value)


def test_set_value_names_its_path() -> None:
    with pytest.raises(TypeError, match=r"content\['x'\] is of type set"):
        encode({"x": {1, 2}})


def test_non_str_key_names_the_path() -> None:
    with pytest.raises(TypeError) as info:
        encode({"outer": {"inner": {3: "three"}}})
    message = str(info.value)
    assert "content['outer']['inner']" in message
    assert "int" in message
    assert "keys must be str" in message


def test_non_str_top_level_key() -> None:
    with pytest.raises(TypeError, match=r"content has a key of type bytes"):
        encode({b"k": 1})


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    with pytest.raises(TypeError, match=r"content\['n'\] is an integer outside the 64-bit range"):
        encode({"n": value})


def test_reserved_bytes_key_is_refused() -> None:
    with pytest.raises(TypeError, match="reserved key"):
        encode({"\x00b": "aGk="})


def test_nested_reserved_bytes_key_names_the_path() -> None:
    with pytest.raises(TypeError) as info:
        encode({"a": [{"\x00b": "aGk="}]})
    assert "content['a'][0]" in str(info.value)
    assert "reserved key" in str(info.value)


def test_reserved_key_text_as_a_value_is_fine() -> None:
    assert roundtrip({"v": "\x00b"}) == {"v": "\x00b"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused_not_turned_into_null(value: float) -> None:
    with pytest.raises(TypeError, match=r"content\['a'\]\[0\]"):
        encode({"a": [value], "b": None})


def test_datetime_is_refused_not_turned_into_str() -> None:
    with pytest.raises(TypeError, match=r"content\['when'\] is of type datetime"):
        encode({"when": datetime.datetime(2024, 1, 2, 3, 4, 5)})


def test_dataclass_is_refused_not_turned_into_dict() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    with pytest.raises(TypeError, match=r"content\['p'\] is of type Point"):
        encode({"p": Point(1)})


def test_lone_surrogate_names_the_path() -> None:
    with pytest.raises(TypeError, match=r"content\['a'\]\['b'\] is a str that is not valid UTF-8"):
        encode({"a": {"b": "\ud800"}})


def test_too_large_message_raises_with_size_and_limit() -> None:
    with pytest.raises(MessageTooLarge) as info:
        encode({"text": "x" * MIB})
    assert info.value.limit == MIB
    assert info.value.size == len(b'{"text":""}') + MIB


def test_message_too_large_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode({"text": "x" * (MIB + 1)})


def test_bytes_just_under_the_limit_fit() -> None:
    raw = b"\xff" * (MIB - 100)
    data = encode({"b": raw})
    # Base64 makes the stored form bigger than the limit; the limit counts raw bytes.
    assert len(data) > MIB
    assert decode(data) == {"b": raw}


def test_bytes_over_the_limit_do_not_fit() -> None:
    with pytest.raises(MessageTooLarge) as info:
        encode({"b": b"\x00" * (MIB + 1)})
    assert info.value.size > MIB
    assert info.value.size < MIB + 100  # counted at raw length, not base64 length


def test_exactly_at_limit_fits_and_one_more_does_not() -> None:
    overhead = len(encode({"t": ""}))
    exact = {"t": "x" * (MIB - overhead)}
    assert len(encode(exact)) == MIB
    with pytest.raises(MessageTooLarge):
        encode({"t": "x" * (MIB - overhead + 1)})


def test_custom_limit() -> None:
    with pytest.raises(MessageTooLarge) as info:
        encode({"t": "x" * 50}, limit=10)
    assert info.value.limit == 10


def test_decode_rejects_corrupt_bytes_tag() -> None:
    with pytest.raises(ValueError, match="corrupt bytes value"):
        decode(b'{"a":{"\\u0000b":"not base64!"}}')
