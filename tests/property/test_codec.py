"""The codec round-trips every content DESIGN §4 allows and refuses the rest with TypeError.

Allowed content is a dict with str keys whose values are JSON types (None, bool,
64-bit integers, finite floats, str, lists, dicts) or bytes; tuples and bytearrays
are accepted and come back as lists and bytes. Anything else is refused with a
TypeError naming where it is, never turned silently into something else.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanlite import MessageTooLarge
from chanlite._codec import decode, encode

SETTINGS = settings(max_examples=150, deadline=None, database=None)
# The key that tags bytes in the encoded form, which content may not use.
RESERVED_KEY = "\x00b"
# A str made only of lone surrogates, which is not valid UTF-8.
SURROGATES = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)

keys = st.text(max_size=8).filter(lambda key: key != RESERVED_KEY)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.binary(max_size=8).map(bytearray),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=15,
)
contents = st.dictionaries(keys, values, max_size=5)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


# Values a message cannot carry: not JSON types, not bytes, or JSON values that would
# not come back as they went (orjson would write many of them as something else).
unencodable = st.one_of(
    st.sets(st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.complex_numbers(allow_nan=False),
    st.decimals(allow_nan=False),
    st.fractions(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.just(Colour.RED),
    st.builds(Point, st.integers()),
    st.sampled_from([object(), range(3), len, orjson.Fragment(b"1")]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=2**64),
    st.integers(max_value=-(2**63) - 1),
    SURROGATES,
)
bad_keys = st.one_of(
    st.integers(), st.none(), st.tuples(st.integers()), st.just(RESERVED_KEY), SURROGATES
)


def normalized(value: Any) -> Any:
    """What ``value`` should come back as: tuples as lists, bytearrays as bytes."""
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalized(item) for item in value]
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def assert_identical(got: Any, expected: Any) -> None:
    """Equal, with the same type at every node (so 1, 1.0 and True differ), same key
    order, and the same sign of zero."""
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for key, item in expected.items():
            assert_identical(got[key], item)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for got_item, item in zip(got, expected, strict=True):
            assert_identical(got_item, item)
    elif isinstance(expected, float) and expected == 0:
        assert math.copysign(1, got) == math.copysign(1, expected)
    else:
        assert got == expected


def planted(bad: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Allowed content with one disallowed value planted at a random depth."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        content = draw(contents)
        value = draw(bad)
        for wrap in draw(st.lists(st.sampled_from(["list", "tuple", "dict"]), max_size=3)):
            value = {"list": [value], "tuple": (value,), "dict": {"k": value}}[wrap]
        content[draw(keys)] = value
        return content

    return build()


def raw_size(content: dict[str, Any]) -> int:
    """The encoded size with bytes counted at their raw length, worked out apart from
    the codec: each bytes value stands in as a same-length ASCII str, minus its quotes."""
    count = 0

    def stand_in(value: Any) -> Any:
        nonlocal count
        if isinstance(value, (bytes, bytearray)):
            count += 1
            return "a" * len(value)
        if isinstance(value, dict):
            return {key: stand_in(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [stand_in(item) for item in value]
        return value

    return len(orjson.dumps(stand_in(content))) - 2 * count


@SETTINGS
@given(contents)
def test_allowed_content_round_trips_exactly_and_is_left_unchanged(
    content: dict[str, Any],
) -> None:
    expected = normalized(content)
    data = encode(content)
    assert_identical(decode(data), expected)
    assert_identical(normalized(content), expected)
    assert encode(content) == data


@SETTINGS
@given(planted(unencodable))
def test_a_value_a_message_cannot_carry_is_a_type_error_naming_its_path(
    content: dict[str, Any],
) -> None:
    with pytest.raises(TypeError, match=r"^content\["):
        encode(content)


@SETTINGS
@given(planted(st.builds(lambda key, value: {key: value}, bad_keys, values)))
def test_a_key_that_is_not_a_utf8_str_or_is_reserved_is_a_type_error(
    content: dict[str, Any],
) -> None:
    with pytest.raises(TypeError, match=r"^content"):
        encode(content)


@SETTINGS
@given(st.one_of(values, unencodable).filter(lambda value: not isinstance(value, dict)))
def test_content_that_is_not_a_dict_is_a_type_error(content: Any) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        encode(content)


@SETTINGS
@given(contents, st.integers(min_value=2, max_value=300))
def test_the_size_limit_counts_bytes_at_their_raw_length(
    content: dict[str, Any], limit: int
) -> None:
    size = raw_size(content)
    if size > limit:
        with pytest.raises(MessageTooLarge) as caught:
            encode(content, limit=limit)
        assert (caught.value.size, caught.value.limit) == (size, limit)
    else:
        assert_identical(decode(encode(content, limit=limit)), normalized(content))


def test_content_that_contains_itself_is_a_type_error() -> None:
    content: dict[str, Any] = {"list": []}
    content["list"].append(content)
    with pytest.raises(TypeError, match="contains itself"):
        encode(content)


@pytest.mark.parametrize("depth", [255, 5000])
def test_nesting_past_the_encoder_limit_is_a_type_error(depth: int) -> None:
    content: dict[str, Any] = {}
    inner = content
    for _ in range(depth - 1):
        inner["k"] = inner = {}
    with pytest.raises(TypeError, match="nested more than 254 levels"):
        encode(content)


def test_nesting_up_to_the_encoder_limit_round_trips() -> None:
    content: dict[str, Any] = {}
    inner = content
    for _ in range(253):
        inner["k"] = inner = {}
    assert decode(encode(content)) == content


def test_int_and_str_enum_members_travel_as_their_plain_values() -> None:
    # Unlike Colour above, these are int and str: HTTPStatus.OK is a fine status.
    class Status(enum.IntEnum):
        OK = 200

    class Kind(enum.StrEnum):
        CHAT = "chat"

    data = encode({"status": Status.OK, "kind": Kind.CHAT})
    assert_identical(decode(data), {"status": 200, "kind": "chat"})
