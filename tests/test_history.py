"""What every layer's history shares: positions, and what a kept history reads as."""

from __future__ import annotations

import pytest

from chanlite._codec import encode
from chanlite.history import KeptHistory, format_position, parse_position, select
from chanlite.protocol import TRACE_KEY


def test_positions_round_trip() -> None:
    assert parse_position(format_position("a1b2c3d4", 17)) == ("a1b2c3d4", 17)


@pytest.mark.parametrize("bad", ["", "a1b2", ":3", "a1:", "a1:-3", "a1:x", "a1:³", 7, None])
def test_a_malformed_position_is_a_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="is not '<epoch>:<offset>'"):
        parse_position(bad)


def test_kept_messages_read_as_sent_without_trace_context() -> None:
    traced = encode(
        {"text": "hi", TRACE_KEY: {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
    )
    kept = KeptHistory("e1", 4, [(3, encode({"text": "before"})), (4, traced)])
    history = select(kept, "e1:2", None)
    assert history.messages == [("e1:3", {"text": "before"}), ("e1:4", {"text": "hi"})]
    assert history.position == "e1:4" and history.complete
