"""Channel and group name rules, each with the message that names it."""

from __future__ import annotations

import pytest

from chanlite import InvalidChannelName
from chanlite.names import (
    is_process_specific,
    queue_name,
    validate_channel_name,
    validate_group_name,
    validate_new_channel_prefix,
)

BOTH = pytest.mark.parametrize(
    "validate", [validate_channel_name, validate_group_name], ids=["channel", "group"]
)


def rule_of(validate: object, name: object) -> str:
    with pytest.raises(InvalidChannelName) as info:
        validate(name)  # type: ignore[operator]
    assert info.value.name == name
    assert info.value.rule in str(info.value)
    return info.value.rule


def test_invalid_channel_name_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_channel_name("")


@pytest.mark.parametrize(
    "name",
    [
        "websocket.connect",
        "http.request",
        "chat-messages",
        "under_score",
        "a",
        "A1.b-c_d",
        "x" * 99,
        "chanlite!",
        "chanlite!abc123",
        "prefix?",
        "prefix?local.part",
    ],
)
def test_valid_channel_names(name: str) -> None:
    assert validate_channel_name(name) == name


@pytest.mark.parametrize("name", ["chat-room", "a.b_c-D9", "g" * 99])
def test_valid_group_names(name: str) -> None:
    assert validate_group_name(name) == name


@BOTH
def test_empty_name(validate: object) -> None:
    assert rule_of(validate, "") == "a name must not be empty"


@BOTH
def test_name_of_100_characters_or_more(validate: object) -> None:
    rule = rule_of(validate, "x" * 100)
    assert "under 100 characters" in rule
    assert "100" in rule.split("this has")[1]


@BOTH
def test_very_long_name(validate: object) -> None:
    assert "this has 250" in rule_of(validate, "x" * 250)


@BOTH
@pytest.mark.parametrize("name", ["has space", "tab\there", "new\nline", "slash/name", "colon:x"])
def test_forbidden_characters(validate: object, name: str) -> None:
    assert "may contain only ASCII letters, digits" in rule_of(validate, name)


@BOTH
@pytest.mark.parametrize("name", ["café", "канал", "名前", "emoji😀"])
def test_unicode_is_refused(validate: object, name: str) -> None:
    assert "ASCII" in rule_of(validate, name)


@BOTH
@pytest.mark.parametrize("name", [None, 42, b"bytes", ["a"], {"a": 1}])
def test_non_str_names(validate: object, name: object) -> None:
    rule = rule_of(validate, name)
    assert rule == f"a name must be a str, not {type(name).__name__}"


def test_two_bangs() -> None:
    assert "at most one '!' or '?'" in rule_of(validate_channel_name, "a!b!c")


def test_bang_and_question_mark() -> None:
    assert "at most one '!' or '?'" in rule_of(validate_channel_name, "a!b?c")


def test_two_question_marks() -> None:
    assert "at most one '!' or '?'" in rule_of(validate_channel_name, "a??")


@pytest.mark.parametrize("name", ["!local", "!", "?x", "?"])
def test_leading_bang_or_question_mark(name: str) -> None:
    assert "must not start with '!' or '?'" in rule_of(validate_channel_name, name)


@pytest.mark.parametrize("name", ["a?b", "a?"])
def test_question_mark_names_are_valid_channels(name: str) -> None:
    assert validate_channel_name(name) == name


@pytest.mark.parametrize("name", ["a!b", "a?b", "a!"])
def test_group_names_allow_no_marks(name: str) -> None:
    assert "a group name may contain only" in rule_of(validate_group_name, name)


def test_characters_after_the_mark_are_checked() -> None:
    assert "may contain only" in rule_of(validate_channel_name, "prefix!bad local")


def test_a_valid_name_seen_before_is_still_returned() -> None:
    assert validate_channel_name("seen.twice") == "seen.twice"
    assert validate_channel_name("seen.twice") == "seen.twice"


def test_process_specific_names() -> None:
    assert is_process_specific("p!x")
    assert is_process_specific("p!")
    assert not is_process_specific("p?x")
    assert not is_process_specific("plain")


def test_queue_name_folds_local_part() -> None:
    assert queue_name("p!local") == "p!"
    assert queue_name("p!") == "p!"
    assert queue_name("plain") == "plain"


@pytest.mark.parametrize("prefix", ["chanlite!", "reply?"])
def test_new_channel_prefix_valid(prefix: str) -> None:
    assert validate_new_channel_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["chanlite", "a!b", 3])
def test_new_channel_prefix_must_end_in_a_mark(prefix: object) -> None:
    assert "ending in '!' or '?'" in rule_of(validate_new_channel_prefix, prefix)
