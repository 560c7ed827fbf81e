"""``async def`` echo consumers with and without chanlite's decorators, for ``ws-decorators``.

Three apps, each served by its own ``chanlite serve`` process so that one variant's
decorators cannot cost the others anything (a worker whose app has any ordered
consumer consults its sequencer for every message; one with any channel-session
consumer deletes sessions on every disconnect):

* ``plain``: ``/echo/``, the undecorated echo (the baseline), default connect;
* ``session``: ``/session-echo/``, ``@channel_session``; the connect consumer accepts
  and sets ``count`` to 0, and every frame reads and increments it, so the session is
  loaded and saved once per message;
* ``ordered``: ``/ordered-echo/``, ``@enforce_ordering`` (strict), default connect
  (chanlite's default connect and disconnect consumers are ordered).

Every app has the same fixed secret key, so none logs a notice about a random one.
"""

from __future__ import annotations

from chanlite import Chanlite, Message, Routes, channel_session, enforce_ordering

#: Not a secret: the benchmark's servers only need a stable key.
SECRET_KEY = "chanlite-bench-not-a-secret-0123456789"

PLAIN_PATH = "/echo/"
SESSION_PATH = "/session-echo/"
ORDERED_PATH = "/ordered-echo/"

plain_routes = Routes()
session_routes = Routes()
ordered_routes = Routes()


@plain_routes.consumer("websocket.receive", path=rf"^{PLAIN_PATH}$")
async def echo(message: Message) -> None:
    """Send the frame back."""
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@session_routes.consumer("websocket.connect", path=rf"^{SESSION_PATH}$")
@channel_session
async def session_connect(message: Message) -> None:
    """Accept the socket and start its counter in the channel session."""
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    message.channel_session["count"] = 0


@session_routes.consumer("websocket.receive", path=rf"^{SESSION_PATH}$")
@channel_session
async def session_echo(message: Message) -> None:
    """Count the frame in the channel session (a save per message) and send it back."""
    message.channel_session["count"] += 1
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@ordered_routes.consumer("websocket.receive", path=rf"^{ORDERED_PATH}$")
@enforce_ordering
async def ordered_echo(message: Message) -> None:
    """Send the frame back, strictly in the socket's order."""
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


plain = Chanlite(plain_routes, secret_key=SECRET_KEY)
session = Chanlite(session_routes, secret_key=SECRET_KEY)
ordered = Chanlite(ordered_routes, secret_key=SECRET_KEY)
