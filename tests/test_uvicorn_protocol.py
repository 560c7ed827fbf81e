"""chanlite's uvicorn WebSocket protocol (``chanlite._uvicorn``), driven in-process
through a transport of the test's own, where a real socket cannot hit the moment."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode

from chanlite._uvicorn import WS_PROTOCOL, WebSocketProtocol

pytestmark = pytest.mark.anyio

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Transport(asyncio.Transport):
    """Keeps what is written; closing only marks it closing, as a real transport does
    until the connection is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)


async def open_protocol() -> tuple[WebSocketProtocol, Transport]:
    """A protocol whose app has accepted the handshake, then waits for the end."""
    accepted = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = uvicorn.Config(app, ws=WS_PROTOCOL, lifespan="off")
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await accepted.wait()  # the app's task runs on a later turn
    return protocol, transport


async def test_shutdown_leaves_a_connection_its_client_just_closed() -> None:
    protocol, transport = await open_protocol()
    close = Frame(Opcode.CLOSE, Close(1000, "bye").serialize())
    protocol.data_received(close.serialize(mask=True))  # uvicorn answers and closes
    assert transport.is_closing()
    protocol.shutdown()  # uvicorn's own raises InvalidState here
    assert transport.is_closing()


async def test_shutdown_closes_an_open_connection_with_1012() -> None:
    protocol, transport = await open_protocol()
    protocol.shutdown()
    assert transport.is_closing()
    assert transport.written.endswith(Close(1012, "").serialize())
