"""``Message``: one message as a consumer sees it."""

from __future__ import annotations

import copy
from collections.abc import ItemsView, Iterator, KeysView
from typing import TYPE_CHECKING, Any

from .channels import Channel

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer
    from .sessions.session import Session


class Message:
    """A message taken off ``channel``, with its reply channel and layer.

    Reads like its content dict (``message["text"]``, ``get``, ``in``, ``keys``,
    ``items``). ``channel_session``, ``http_session`` and ``user`` exist only once a
    decorator has set them.
    """

    #: Set by ``@channel_session``.
    channel_session: Session
    #: Set by ``@http_session``; None when the message carries no valid session.
    http_session: Session | None
    #: Set by the ``chanlite.auth`` decorators.
    user: Any

    def __init__(
        self, content: dict[str, Any], channel_name: str, layer: BaseChannelLayer | None = None
    ) -> None:
        if not isinstance(content, dict):
            raise TypeError(f"message content must be a dict, not {type(content).__name__}")
        self.content = content
        self.channel_layer = layer
        self.channel = Channel(channel_name, layer)
        reply = content.get("reply_channel")
        self.reply_channel: Channel | None = Channel(reply, layer) if reply else None

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def __iter__(self) -> Iterator[str]:
        return iter(self.content)

    def get(self, key: str, default: Any = None) -> Any:
        """``content.get(key, default)``."""
        return self.content.get(key, default)

    def keys(self) -> KeysView[str]:
        """The content's keys."""
        return self.content.keys()

    def items(self) -> ItemsView[str, Any]:
        """The content's items."""
        return self.content.items()

    def copy(self) -> Message:
        """A deep copy: changing it does not change this message."""
        return Message(copy.deepcopy(self.content), self.channel.name, self.channel_layer)

    def __repr__(self) -> str:
        # Content may hold user data: show only its keys.
        return f"<Message channel={self.channel.name!r} keys={sorted(self.content)!r}>"
