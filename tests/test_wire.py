"""The ``chanlite.v1`` wire format (:mod:`chanlite.wire`) and one socket's side of
recovery (:mod:`chanlite.socket_recovery`), unit by unit."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from chanlite.metrics import Metrics
from chanlite.protocol import GROUP_KEY, POSITION_KEY, RECOVERY_KEY, REPLAY_KEY
from chanlite.socket_recovery import HOLD_LIMIT, SocketRecovery
from chanlite.wire import GroupMessage, frame, parse_handshake

V1 = ["chanlite.v1"]


def stamped(group: str, offset: int, text: str = "", epoch: str = "e1") -> GroupMessage:
    message = GroupMessage.of(
        {"text": text or f"{group}{offset}", GROUP_KEY: group, POSITION_KEY: f"{epoch}:{offset}"}
    )
    assert message is not None
    return message


def texts(replies: list[dict[str, Any]]) -> list[Any]:
    return [json.loads(reply["text"]) for reply in replies]


# -- the handshake ------------------------------------------------------------------


def test_a_handshake_without_the_subprotocol_is_not_v1() -> None:
    assert parse_handshake("chanlite_positions=%7B%7D", ["other"]) is None


def test_the_handshake_takes_its_parameters_out_of_the_request() -> None:
    positions = quote(json.dumps({"room-1": "ab12cd34:7"}))
    query = f"a=1&chanlite_positions={positions}&chanlite_client=tab_1-x&b=2"
    handshake = parse_handshake(query, ["graphql-ws", "chanlite.v1"])
    assert handshake is not None
    assert handshake.positions == {"room-1": "ab12cd34:7"}
    assert handshake.client_id == "tab_1-x"
    assert handshake.query_string == "a=1&b=2"
    assert handshake.subprotocols == ["graphql-ws"]


def test_a_query_without_the_parameters_is_left_as_it_was() -> None:
    handshake = parse_handshake("a=%2F&b", V1)
    assert handshake is not None
    assert (handshake.query_string, handshake.positions, handshake.client_id) == (
        "a=%2F&b",
        {},
        None,
    )


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("not json", {}),
        (json.dumps(["room-1"]), {}),
        (json.dumps({"room-1": "nocolon", "room-2": "e:2"}), {"room-2": "e:2"}),
        (json.dumps({"bad name": "e:1", "room-3": 5}), {}),
    ],
)
def test_malformed_positions_are_left_out(raw: str, kept: dict[str, str]) -> None:
    handshake = parse_handshake(f"chanlite_positions={quote(raw)}", V1)
    assert handshake is not None
    assert handshake.positions == kept


def test_a_malformed_client_id_is_left_out() -> None:
    handshake = parse_handshake("chanlite_client=" + "x" * 65, V1)
    assert handshake is not None
    assert handshake.client_id is None


# -- frames -------------------------------------------------------------------------


def test_frames_wrap_text_and_bytes_and_leave_the_rest() -> None:
    assert texts([frame({"text": "hi"})]) == [{"text": "hi"}]
    assert texts([frame({"bytes": b"\x00\xff"})]) == [{"bytes": "AP8="}]
    assert frame({"accept": True}) == {"accept": True}
    closing = frame({"text": "bye", "close": 4000})
    assert closing["close"] == 4000
    assert texts([closing]) == [{"text": "bye"}]


def test_a_group_message_keeps_its_content_and_frames_once() -> None:
    message = stamped("room-1", 3, "hello")
    assert dict(message) == {"text": "hello"}
    assert (message.group, message.epoch, message.offset) == ("room-1", "e1", 3)
    assert message.frame() is message.frame()
    assert texts([message.frame()]) == [{"g": "room-1", "p": "e1:3", "text": "hello"}]
    assert GroupMessage.of({"text": "x", GROUP_KEY: "room-1", POSITION_KEY: "bad"}) is None


# -- one socket's recovery ------------------------------------------------------------


def replay(group: str, *offsets: int) -> dict[str, Any]:
    return {REPLAY_KEY: group, "messages": [[f"e1:{n}", {"text": f"{group}{n}"}] for n in offsets]}


def summary(**recovered: bool) -> dict[str, Any]:
    return {RECOVERY_KEY: {"recovered": recovered, "positions": {}}}


def test_held_messages_go_out_in_offset_order_once_then_the_summary() -> None:
    recovery = SocketRecovery({"room-1": "e1:2"}, Metrics())
    assert recovery.admit(stamped("room-1", 5), True) == []  # live, while re-joining
    assert recovery.admit(replay("room-1", 3, 4, 5), True) == []
    assert recovery.admit(stamped("room-1", 6), True) == []
    out = texts(recovery.admit(summary(**{"room-1": True}), True))
    assert [item.get("p") for item in out] == ["e1:3", "e1:4", "e1:5", "e1:6", None]
    assert out[-1] == {"recovery": {"recovered": {"room-1": True}, "positions": {}}}
    assert (recovery.metrics.recoveries, recovery.metrics.replayed_messages) == (
        {"recovered": 1},
        3,
    )
    # Live copies of what was replayed are dropped; later ones pass, even one that
    # comes after a later one (two senders at once).
    assert recovery.admit(stamped("room-1", 5), True) == []
    assert texts(recovery.admit(stamped("room-1", 8), True))[0]["p"] == "e1:8"
    assert texts(recovery.admit(stamped("room-1", 7), True))[0]["p"] == "e1:7"
    # A new epoch starts over at 1, and is not mistaken for a duplicate.
    assert texts(recovery.admit(stamped("room-1", 1, epoch="e2"), True))[0]["p"] == "e2:1"


def test_other_groups_and_plain_replies_are_not_held() -> None:
    recovery = SocketRecovery({"room-1": "e1:2"}, Metrics())
    assert texts(recovery.admit(stamped("room-2", 9), True))[0]["p"] == "e1:9"
    assert texts(recovery.admit({"text": "plain"}, True)) == [{"text": "plain"}]


def test_what_comes_before_the_socket_opens_waits_for_it() -> None:
    recovery = SocketRecovery({"room-1": "e1:0"}, Metrics())
    assert recovery.admit(replay("room-1", 1), False) == []
    assert recovery.admit(stamped("room-2", 4), False) == []
    assert recovery.admit({"accept": True}, False) == [{"accept": True}]
    assert recovery.admit(summary(**{"room-1": True}), False) == []
    out = texts(recovery.release_early())
    assert [item.get("p") for item in out] == ["e1:4", "e1:1", None]


def test_a_re_join_that_holds_too_much_says_so() -> None:
    recovery = SocketRecovery({"room-1": "e1:0"}, Metrics())
    for n in range(HOLD_LIMIT):
        recovery.admit(stamped("room-1", n + 1), True)
    assert not recovery.overflowing
    recovery.admit(stamped("room-1", HOLD_LIMIT + 1), True)
    assert recovery.overflowing
