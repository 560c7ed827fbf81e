"""Channel and group name validation agrees with the rules of DESIGN §4.

The regexes below are copied from DESIGN.md, not imported, so the validator is
checked against the contract rather than against itself.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chanlite import InvalidChannelName
from chanlite.names import validate_channel_name, validate_group_name

SETTINGS = settings(max_examples=300, deadline=None, database=None)
# DESIGN §4, verbatim.
CHANNEL_RE = r"^[a-zA-Z0-9\-_.]+([?!][a-zA-Z0-9\-_.]*)?$"
GROUP_RE = r"^[a-zA-Z0-9\-_.]+$"
# DESIGN §4: names are under 100 characters.
MAX_LENGTH = 100


def is_channel(name: str) -> bool:
    return len(name) < MAX_LENGTH and re.fullmatch(CHANNEL_RE, name) is not None


def is_group(name: str) -> bool:
    return len(name) < MAX_LENGTH and re.fullmatch(GROUP_RE, name) is not None


def verdict(validate: object, name: object) -> bool:
    try:
        returned = validate(name)  # type: ignore[operator]
    except InvalidChannelName as exc:
        assert exc.name == name and exc.rule  # it says which name and which rule
        return False
    assert returned == name
    return True


# Text near the rules: the allowed characters, the marks, and a few that are not.
NEAR = st.text(alphabet="aZ09-_.?!\n \t/:é\x00", max_size=110)
names = st.one_of(
    st.from_regex(CHANNEL_RE, fullmatch=True),
    st.from_regex(GROUP_RE, fullmatch=True),
    NEAR,
    st.text(max_size=110),
)


@SETTINGS
@given(names)
@example("a\n")  # "$" alone would let a trailing newline through
@example("a" * 99)
@example("a" * 100)
@example("a!" + "b" * 97)
def test_channel_names_follow_the_design_regex(name: str) -> None:
    assert verdict(validate_channel_name, name) == is_channel(name)
    # A second look (answered from the cache of valid names) agrees with the first.
    assert verdict(validate_channel_name, name) == is_channel(name)


@SETTINGS
@given(names)
@example("a\n")
@example("a" * 99)
@example("a" * 100)
@example("a!")
def test_group_names_follow_the_design_regex(name: str) -> None:
    assert verdict(validate_group_name, name) == is_group(name)
    assert verdict(validate_group_name, name) == is_group(name)


@SETTINGS
@given(st.from_regex(CHANNEL_RE, fullmatch=True).filter(lambda name: len(name) < MAX_LENGTH))
def test_a_channel_name_valid_as_a_channel_is_a_group_name_only_without_a_mark(
    name: str,
) -> None:
    assert verdict(validate_channel_name, name)
    assert verdict(validate_group_name, name) == ("!" not in name and "?" not in name)


@SETTINGS
@given(st.one_of(st.integers(), st.binary(), st.none(), st.lists(st.text(max_size=3))))
def test_a_name_that_is_not_a_str_is_refused(name: object) -> None:
    for validate in (validate_channel_name, validate_group_name):
        with pytest.raises(InvalidChannelName, match="must be a str"):
            validate(name)
