"""The ``chanlite.v1`` WebSocket subprotocol: what a client that takes part in
recovery (DESIGN §11) sends and gets. ``docs/protocol.md`` describes it for client
authors; this module is its one implementation on the server.

* **Handshake.** The client offers the subprotocol ``chanlite.v1`` and may add two
  query parameters: ``chanlite_positions``, a JSON object of group name to the last
  position it saw there, and ``chanlite_client``, an id that stays the same across
  its reconnects. :func:`parse_handshake` takes both out of the query string, and the
  subprotocol out of the offered list, so the app sees the request as any other;
  the ``websocket.connect`` message gets them as ``positions`` and ``client_id``.
* **Frames to the client** are JSON text frames (:func:`frame`): ``{"text": ...}`` or
  ``{"bytes": <base64>}`` for a reply, with ``"g"`` (group) and ``"p"`` (position)
  for a message of a group that keeps a history; and once, when the connect consumer
  has finished, ``{"recovery": {"recovered": {group: bool}, "positions": {group:
  position}}}`` (:func:`recovery_frame`).
* Frames from the client are unchanged.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from .history import parse_position
from .names import validate_group_name
from .protocol import GROUP_KEY, POSITION_KEY, SUBPROTOCOL

logger = logging.getLogger("chanlite.server")

#: The query parameters the handshake may carry.
POSITIONS_PARAM = "chanlite_positions"
CLIENT_PARAM = "chanlite_client"
#: Most groups one handshake may present positions for (the rest are ignored).
MAX_PRESENTED = 100
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class GroupMessage(dict[str, Any]):
    """A reply that reached this process as a message of a group with history: the
    content as it was sent (what a plain socket gets), with its group and position
    kept aside. One is shared by every socket of the process it is for, so its
    ``chanlite.v1`` frame is made once (:meth:`frame`)."""

    __slots__ = ("_frame", "epoch", "group", "offset", "position")

    def __init__(self, content: dict[str, Any], group: str, position: str) -> None:
        super().__init__(content)
        self.group = group
        self.position = position
        epoch, _, offset = position.rpartition(":")
        self.epoch, self.offset = epoch, int(offset)
        self._frame: dict[str, Any] | None = None

    @classmethod
    def of(cls, message: dict[str, Any]) -> GroupMessage | None:
        """The group message that ``message`` carries, if it is stamped with a
        group and a well-formed position; None otherwise."""
        group, position = message.get(GROUP_KEY), message.get(POSITION_KEY)
        if not isinstance(group, str) or not isinstance(position, str):
            return None
        try:
            parse_position(position)
        except ValueError:
            return None
        content = {k: v for k, v in message.items() if k != GROUP_KEY and k != POSITION_KEY}
        return cls(content, group, position)

    def frame(self) -> dict[str, Any]:
        """This message as a reply to a ``chanlite.v1`` socket."""
        if self._frame is None:
            self._frame = frame(self, {"g": self.group, "p": self.position})
        return self._frame


def frame(reply: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``reply`` as a reply to a ``chanlite.v1`` socket: its ``text`` or ``bytes``
    wrapped in a JSON text frame (with ``extra`` keys); a reply without either
    (an accept, a close) is unchanged."""
    text, data = reply.get("text"), reply.get("bytes")
    if text is None and data is None:
        return reply
    body = dict(extra) if extra else {}
    if text is not None:
        body["text"] = str(text)
    else:
        raw = data if isinstance(data, bytes) else str(data).encode()
        body["bytes"] = base64.b64encode(raw).decode("ascii")
    wrapped = {key: value for key, value in reply.items() if key not in ("text", "bytes")}
    wrapped["text"] = orjson.dumps(body).decode()
    return wrapped


def recovery_frame(summary: dict[str, Any]) -> dict[str, Any]:
    """The frame that ends a re-join, from the worker's summary."""
    return {"text": orjson.dumps({"recovery": summary}).decode()}


@dataclass(frozen=True)
class Handshake:
    """What a ``chanlite.v1`` client's handshake carried, and the request without it."""

    positions: dict[str, str]
    client_id: str | None
    query_string: str
    subprotocols: list[str]


def parse_handshake(query_string: str, subprotocols: list[str]) -> Handshake | None:
    """The ``chanlite.v1`` part of a handshake, or None if the client did not offer
    the subprotocol. Malformed positions or ids are left out, with one log line: the
    client then learns that those groups were not recovered."""
    if SUBPROTOCOL not in subprotocols:
        return None
    params = parse_qsl(query_string, keep_blank_values=True)
    kept = [(key, value) for key, value in params if key not in (POSITIONS_PARAM, CLIENT_PARAM)]
    found = dict(params)
    positions = _positions(found.get(POSITIONS_PARAM))
    client_id = found.get(CLIENT_PARAM)
    if client_id is not None and not _CLIENT_ID.fullmatch(client_id):
        logger.info("ignored a chanlite_client that is not 1-64 of [A-Za-z0-9_-]")
        client_id = None
    query = urlencode(kept) if len(kept) != len(params) else query_string
    others = [name for name in subprotocols if name != SUBPROTOCOL]
    return Handshake(positions, client_id, query, others)


def _positions(text: str | None) -> dict[str, str]:
    """The presented positions that are well formed."""
    if not text:
        return {}
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        logger.info("ignored chanlite_positions: it is not JSON")
        return {}
    if not isinstance(raw, dict):
        logger.info("ignored chanlite_positions: it is not a JSON object")
        return {}
    positions: dict[str, str] = {}
    for group, position in list(raw.items())[:MAX_PRESENTED]:
        try:
            validate_group_name(group)
            parse_position(position)
        except ValueError as exc:
            logger.info("ignored a presented position: %s", exc)
            continue
        positions[group] = position
    return positions
