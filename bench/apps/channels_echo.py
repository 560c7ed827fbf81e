"""Django Channels 4 on uvicorn: ``uvicorn bench.apps.channels_echo:application``.

Minimal Django settings are configured here in code (no project, no database), with
Channels' ``InMemoryChannelLayer`` at its defaults.

* ``/echo/``: an ``AsyncWebsocketConsumer`` sending each frame back.
* ``/sync-echo/``: the same as a sync ``WebsocketConsumer`` (Channels runs it through
  ``database_sync_to_async``, in asgiref's thread).
* ``/room/NAME/``: an ``AsyncWebsocketConsumer`` that joins the group on connect
  (before accepting), ``group_send``s each frame, and relays group messages.
"""

from __future__ import annotations

from typing import Any

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="chanlite-bench-not-a-secret-0123456789",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        DATABASES={},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer  # type: ignore[import-untyped]
from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]
from django.urls import re_path  # type: ignore[import-untyped]


class AsyncEcho(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Send every text frame back (``async def`` handlers)."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


class SyncEcho(WebsocketConsumer):  # type: ignore[misc]
    """Send every text frame back (sync handlers)."""

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=text_data)


class Room(AsyncWebsocketConsumer):  # type: ignore[misc]
    """A member of ``room-NAME``: frames go to the group, group messages to the client."""

    async def connect(self) -> None:
        self.group = f"room-{self.scope['url_route']['kwargs']['name']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(self.group, {"type": "room.message", "text": text_data})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                re_path(r"^echo/$", AsyncEcho.as_asgi()),
                re_path(r"^sync-echo/$", SyncEcho.as_asgi()),
                re_path(r"^room/(?P<name>[\w-]+)/$", Room.as_asgi()),
            ]
        )
    }
)
