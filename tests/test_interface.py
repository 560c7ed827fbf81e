"""The interface server under load, driven in-process through ASGI: sockets that are
fake clients, a real app, its layer and its workers on the test's event loop.

Every wait is for an observable condition and bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any

import pytest

from chanlite import Chanlite, Group, Message, Routes, sockets
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.metrics import Metrics
from chanlite.server import InterfaceServer

from .asgi_clients import TIMEOUT, FakeClient, started, until, until_depth

pytestmark = pytest.mark.anyio

KEY = "a-long-enough-random-secret-key-for-tests"


async def open_clients(
    app: Chanlite, count: int, path: str = "/", *, accept: bool = False
) -> list[FakeClient]:
    """Connect ``count`` clients and wait for each handshake's verdict; with
    ``accept``, answer their connects from the test (an app without workers)."""
    clients = [FakeClient(app, path) for _ in range(count)]
    for client in clients:
        client.connect()
    if accept:
        assert app.layer is not None
        for _ in clients:
            _, connect = await app.layer.receive(["websocket.connect"], timeout=TIMEOUT)
            await app.layer.send(connect["reply_channel"], {"accept": True})
    for client in clients:
        await client.wait_for(lambda client=client: client.status is not None)  # type: ignore[misc]
    return clients


def memory_layer(app: Chanlite) -> InMemoryChannelLayer:
    assert isinstance(app.layer, InMemoryChannelLayer)
    return app.layer


def interface(app: Chanlite) -> InterfaceServer:
    assert app.interface is not None
    return app.interface


# -- replies ------------------------------------------------------------------------


def room_routes() -> Routes:
    routes = Routes()

    @routes.consumer("websocket.connect")
    async def join(message: Message) -> None:
        await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
        await Group("room").aadd(message.reply_channel)  # type: ignore[arg-type]

    @routes.consumer("websocket.receive")
    async def say(message: Message) -> None:
        await Group("room").asend({"text": message["text"]})

    return routes


async def test_a_broadcast_reaches_every_local_socket_past_the_capacity() -> None:
    # Defect 1: every reply channel of a process shares its interface.<id>! queue, so
    # a broadcast to more local sockets than the capacity used to drop the rest.
    app = Chanlite(room_routes(), layer="memory://?capacity=10", secret_key=KEY)
    async with started(app):
        clients = await open_clients(app, 40)
        assert {client.status for client in clients} == {"open"}
        clients[0].send_text("to everyone")
        for client in clients:
            await client.wait_for(lambda client=client: client.texts == ["to everyone"])  # type: ignore[misc]
        for client in clients:
            client.close()


class NotingClient(FakeClient):
    """Notes the task each frame written to it was written in; with ``broken``,
    every frame write fails, as to a client that is gone."""

    def __init__(self, app: Chanlite, *, broken: bool = False) -> None:
        super().__init__(app)
        self.broken = broken
        self.write_tasks: list[asyncio.Task[Any] | None] = []

    async def _record(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            if self.broken:
                raise ConnectionResetError("the client is gone")
            self.write_tasks.append(asyncio.current_task())
        await super()._record(message)


async def open_in_order(app: Chanlite, clients: list[FakeClient]) -> None:
    """Open ``clients`` one after another (so they join the room in that order)."""
    for client in clients:
        client.connect()
        await client.wait_for(lambda client=client: client.status == "open")  # type: ignore[misc]


async def test_a_broadcast_writes_to_every_socket_in_one_task() -> None:
    # One task for the whole fan-out, not one per socket (sockets.Writes).
    app = Chanlite(room_routes(), secret_key=KEY)
    async with started(app):
        clients = [NotingClient(app) for _ in range(3)]
        await open_in_order(app, list(clients))
        clients[0].send_text("to everyone")
        for client in clients:
            await client.wait_for(lambda client=client: client.texts == ["to everyone"])  # type: ignore[misc]
        tasks = {client.write_tasks[0] for client in clients}
        assert len(tasks) == 1 and None not in tasks
        for client in clients:
            client.close()


async def test_a_member_that_stopped_reading_holds_up_no_other_and_keeps_its_order() -> None:
    app = Chanlite(room_routes(), secret_key=KEY)
    async with started(app):
        first, stalled, last = FakeClient(app), StalledClient(app), FakeClient(app)
        await open_in_order(app, [first, stalled, last])
        stalled.reading.clear()
        for text in ("1", "2", "3"):
            first.send_text(text)
        for client in (first, last):
            await client.wait_for(lambda client=client: client.texts == ["1", "2", "3"])  # type: ignore[misc]
        assert stalled.texts == []
        stalled.reading.set()
        await stalled.wait_for(lambda: len(stalled.texts) == 3)
        assert stalled.texts == ["1", "2", "3"]
        for client in (first, stalled, last):
            client.close()


async def test_a_member_that_is_gone_mid_broadcast_stops_no_other() -> None:
    app = Chanlite(room_routes(), secret_key=KEY)
    async with started(app):
        first, gone, last = NotingClient(app), NotingClient(app), NotingClient(app)
        await open_in_order(app, [first, gone, last])
        gone.broken = True
        first.send_text("1")
        first.send_text("2")
        for client in (first, last):
            await client.wait_for(lambda client=client: client.texts == ["1", "2"])  # type: ignore[misc]
        assert gone.texts == []
        for client in (first, gone, last):
            client.close()


async def test_replies_to_one_socket_keep_their_order() -> None:
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def count(message: Message) -> None:
        for n in range(50):
            await message.reply_channel.asend({"text": f"{message['text']}{n}"})  # type: ignore[union-attr]

    app = Chanlite(routes, secret_key=KEY)
    async with started(app):
        (client,) = await open_clients(app, 1)
        client.send_text("a")
        client.send_text("b")
        expected = [f"a{n}" for n in range(50)] + [f"b{n}" for n in range(50)]
        await client.wait_for(lambda: len(client.texts) == 100)
        assert client.texts == expected
        client.close()


async def test_a_consumer_that_changes_its_message_does_not_change_others() -> None:
    routes = Routes()
    seen: list[dict[str, Any]] = []

    @routes.consumer("websocket.connect")
    async def join(message: Message) -> None:
        await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
        await Group("copies").aadd(message.reply_channel)  # type: ignore[arg-type]

    @routes.consumer("websocket.receive")
    async def mutate(message: Message) -> None:
        seen.append(dict(message.content))
        message.content["text"] = "changed"
        reply = {"text": "shared"}
        await Group("copies").asend(reply)
        reply["text"] = "changed after send"

    app = Chanlite(routes, secret_key=KEY)
    async with started(app):
        first, second = await open_clients(app, 2)
        first.send_text("original")
        for client in (first, second):
            await client.wait_for(lambda client=client: client.texts == ["shared"])  # type: ignore[misc]
        assert seen[0]["text"] == "original"
        first.close()
        second.close()


async def test_replies_through_a_send_that_returns_a_future_go_out_once() -> None:
    # ASGI only promises that send() returns an awaitable, not a coroutine.
    class FutureClient(FakeClient):
        def _record(self, message: dict[str, Any]) -> asyncio.Future[None]:  # type: ignore[override]
            self.sent.append(message)
            self.changed.set()
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    app = Chanlite(echo_routes(), secret_key=KEY)
    async with started(app):
        client = FutureClient(app)
        client.connect()
        await client.wait_for(lambda: client.status == "open")
        client.send_text("once")
        await client.wait_for(lambda: client.texts == ["once"])
        client.send_text("twice")
        await client.wait_for(lambda: len(client.texts) == 2)
        assert client.texts == ["once", "twice"]
        client.close()


def echo_routes() -> Routes:
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def echo(message: Message) -> None:
        await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]

    return routes


# -- backpressure on websocket.receive ------------------------------------------------


def blocked_routes(gate: threading.Event, order: list[str]) -> Routes:
    routes = Routes()

    @routes.consumer("websocket.receive")
    def record(message: Message) -> None:
        assert gate.wait(TIMEOUT)
        order.append(message["text"])
        message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]

    return routes


async def test_frames_that_wait_for_room_go_in_the_order_they_came() -> None:
    # Defect 3: frames meeting a full websocket.receive used to retry with a backoff,
    # so whichever socket happened to retry first got the room and an unlucky one
    # could starve. Now they queue, first come first served.
    app = Chanlite(Routes(), layer="memory://?capacity=1", workers=False, secret_key=KEY)
    async with started(app):
        layer = memory_layer(app)
        clients = await open_clients(app, 8, accept=True)
        clients[0].send_text("c0")
        await until_depth(layer, "websocket.receive", 1)
        for index, client in enumerate(clients[1:], start=1):
            client.send_text(f"c{index}")
            await until(lambda index=index: layer.waiting_senders("websocket.receive") == index)  # type: ignore[misc]
        received = []
        for _ in clients:
            _, message = await layer.receive(["websocket.receive"], timeout=TIMEOUT)
            received.append(message["text"])
        assert received == [f"c{index}" for index in range(8)]
        assert not any(client.of_type("websocket.close") for client in clients)
        for client in clients:
            client.close()


async def test_a_burst_from_many_sockets_waits_for_busy_workers_and_none_is_closed() -> None:
    gate, order = threading.Event(), []
    app = Chanlite(
        blocked_routes(gate, order),
        layer="memory://?capacity=2",
        secret_key=KEY,
        receive_full_timeout=TIMEOUT,
    )
    app.threads = 1
    async with started(app):
        try:
            clients = await open_clients(app, 30)
            for index, client in enumerate(clients):
                for frame in range(3):
                    client.send_text(f"{index}.{frame}")
            gate.set()
            for index, client in enumerate(clients):
                expected = [f"{index}.{frame}" for frame in range(3)]
                await client.wait_for(
                    lambda client=client, expected=expected: client.texts == expected
                )  # type: ignore[misc]
            assert not any(client.of_type("websocket.close") for client in clients)
            for client in clients:
                client.close()
        finally:
            gate.set()  # before shutdown, which waits for consumers in flight


async def test_a_frame_blocked_past_the_timeout_closes_with_1013(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, order = threading.Event(), []
    app = Chanlite(
        blocked_routes(gate, order),
        layer="memory://?capacity=1",
        secret_key=KEY,
        receive_full_timeout=0.2,
    )
    app.threads = 1
    async with started(app):
        try:
            (client,) = await open_clients(app, 1)
            for n in range(4):  # taken, waiting for a thread, queued, then blocked
                client.send_text(str(n))
            await client.wait_for(lambda: bool(client.of_type("websocket.close")))
            assert client.of_type("websocket.close")[0]["code"] == 1013
            assert "stayed full" in caplog.text
        finally:
            gate.set()  # before shutdown, which waits for consumers in flight


# -- connects and disconnects ---------------------------------------------------------


async def test_a_flood_of_handshakes_past_the_capacity_is_not_refused() -> None:
    # Defect 4: a full websocket.connect channel answered 503 at once, so 200
    # handshakes in flight on a healthy server met 503s at the default capacity.
    app = Chanlite(Routes(), layer="memory://?capacity=2", secret_key=KEY)
    async with started(app):
        clients = await open_clients(app, 50)
        assert [client.status for client in clients] == ["open"] * 50
        for client in clients:
            client.close()


async def test_a_connect_channel_that_stays_full_still_answers_503() -> None:
    app = Chanlite(
        Routes(),
        layer="memory://?capacity=1",
        workers=False,
        secret_key=KEY,
        websocket_connect_timeout=0.2,
    )
    async with started(app):
        await memory_layer(app).send("websocket.connect", {"filler": True})
        (client,) = await open_clients(app, 1)
        assert client.status == "refused 503"


async def test_every_socket_of_a_mass_close_gets_its_disconnect() -> None:
    # Defect 2: a websocket.disconnect that met a full channel was dropped, so a
    # mass close lost disconnects. Now it waits for room (receive_full_timeout).
    gate = threading.Event()
    closed: list[str] = []
    routes = Routes()

    @routes.consumer("websocket.disconnect")
    def leave(message: Message) -> None:
        assert gate.wait(TIMEOUT)
        closed.append(message["reply_channel"])

    app = Chanlite(routes, layer="memory://?capacity=1", secret_key=KEY)
    app.threads = 1
    async with started(app):
        try:
            layer = memory_layer(app)
            clients = await open_clients(app, 10)
            for client in clients:
                client.close()
            # One disconnect runs, one waits for the thread, one fills the channel:
            # the other seven must wait for room, not be dropped.
            await until(lambda: layer.waiting_senders("websocket.disconnect") == 7)
            gate.set()
            for client in clients:
                await client.finished()
            await until(lambda: len(closed) == 10)
        finally:
            gate.set()  # before shutdown, which waits for consumers in flight
    assert len(set(closed)) == 10


async def test_a_disconnect_that_cannot_fit_at_shutdown_is_dropped_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # At shutdown the workers have stopped, so nothing will make room: waiting
    # receive_full_timeout for each socket would only delay the exit.
    app = Chanlite(Routes(), layer="memory://?capacity=1", secret_key=KEY, receive_full_timeout=60)
    await app.startup()
    clients = await open_clients(app, 3)
    with caplog.at_level(logging.WARNING, logger="chanlite.server"):
        await app.drain()  # as a graceful stop does, before the layer closes
        for client in clients:
            await client.finished()
        await app.shutdown()
    assert [client.of_type("websocket.close")[0]["code"] for client in clients] == [1001] * 3
    assert caplog.text.count("a disconnect message was dropped") == 2


# -- bad clients and bad replies ----------------------------------------------------------


class StalledClient(FakeClient):
    """A client whose connection takes no data while ``reading`` is clear: it has
    stopped reading, and the server's writes to it wait."""

    def __init__(self, app: Chanlite, path: str = "/") -> None:
        super().__init__(app, path)
        self.reading = asyncio.Event()
        self.reading.set()

    async def _record(self, message: dict[str, Any]) -> None:
        if message["type"] in ("websocket.send", "websocket.close"):
            await self.reading.wait()
        await super()._record(message)


def flood_routes(count: int, done: asyncio.Event) -> Routes:
    """A receive consumer that sends ``count`` replies at once, then sets ``done``."""
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def flood(message: Message) -> None:
        for n in range(count):
            await message.reply_channel.asend({"text": str(n)}, immediately=True)  # type: ignore[union-attr]
        done.set()

    return routes


async def open_stalled(app: Chanlite) -> StalledClient:
    """A socket that has been accepted, then stopped reading."""
    client = StalledClient(app)
    client.connect()
    await client.wait_for(lambda: client.status == "open")
    client.reading.clear()
    return client


async def test_a_socket_that_stops_reading_is_closed_with_1013_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Past max_pending_replies the waiting replies are dropped, and so is every later
    # one: the close goes out once the write in progress completes.
    flooded = asyncio.Event()
    app = Chanlite(flood_routes(30, flooded), secret_key=KEY)
    app.settings = dataclasses.replace(app.settings, max_pending_replies=5)
    async with started(app):
        client = await open_stalled(app)
        with caplog.at_level(logging.WARNING, logger="chanlite.server"):
            client.send_text("flood")
            async with asyncio.timeout(TIMEOUT):
                await flooded.wait()  # every reply has reached the socket
        client.reading.set()
        await client.wait_for(lambda: bool(client.of_type("websocket.close")))
        await client.finished()
    assert client.texts == ["0"]  # the write that was in progress
    assert client.of_type("websocket.close")[0]["code"] == 1013
    assert caplog.text.count("closing a socket with 1013: 5 replies are waiting") == 1


async def test_shutdown_gives_up_on_a_socket_that_never_reads(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its last replies cannot be written, nor its close frame: shutdown waits for
    # neither past _SHUTDOWN_WRITE_TIMEOUT, and does not try the close at all.
    monkeypatch.setattr(sockets, "SHUTDOWN_WRITE_TIMEOUT", 0.1)
    flooded = asyncio.Event()
    app = Chanlite(flood_routes(3, flooded), secret_key=KEY)
    await app.startup()
    client = await open_stalled(app)
    client.send_text("flood")
    async with asyncio.timeout(TIMEOUT):
        await flooded.wait()
    with caplog.at_level(logging.WARNING, logger="chanlite.server"):
        async with asyncio.timeout(TIMEOUT):
            await app.shutdown()
    [record] = caplog.records
    assert record.getMessage() == (
        "gave up writing their last replies to 1 sockets after 0.1s: their clients are not reading"
    )
    client.close()
    client.reading.set()
    await client.finished()


@pytest.mark.parametrize(
    ("close", "problem"),
    [
        ("now", "'close': 'now'"),
        (99999, "'close': 99999"),
        (1005, "'close': 1005"),
        (0, "'close': 0"),
    ],
)
async def test_a_close_that_is_not_a_close_code_is_dropped(
    caplog: pytest.LogCaptureFixture, close: Any, problem: str
) -> None:
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def bad_close(message: Message) -> None:
        await message.reply_channel.asend({"close": close})  # type: ignore[union-attr]
        await message.reply_channel.asend({"text": "still open"})  # type: ignore[union-attr]

    app = Chanlite(routes, secret_key=KEY)
    async with started(app):
        (client,) = await open_clients(app, 1)
        with caplog.at_level(logging.ERROR, logger="chanlite.server"):
            client.send_text("close please")
            await client.wait_for(lambda: client.texts == ["still open"])
        assert not client.of_type("websocket.close")
        client.close()
    [record] = caplog.records
    assert f"dropped a reply to a socket: it has {problem}" in record.getMessage()


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(1007, "invalid frame data"), (1009, "message too big"), (1002, "protocol error")],
)
async def test_a_protocol_failure_the_server_reports_is_logged_in_one_line(
    caplog: pytest.LogCaptureFixture, code: int, meaning: str
) -> None:
    app = Chanlite(Routes(), secret_key=KEY)
    async with started(app):
        (client,) = await open_clients(app, 1)
        with caplog.at_level(logging.INFO, logger="chanlite.server"):
            client.close(code, "the server's reason")
            await client.finished()
    [record] = caplog.records
    assert record.getMessage().startswith(f"a socket closed with {code} ({meaning}")
    assert record.getMessage().endswith("): the server's reason")


async def http_status(app: Chanlite, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """The status ``app`` answers a POST to ``/`` with."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "scheme": "http",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def test_http_requests_over_the_message_limit_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Behind a server with no limit on headers (plain uvicorn with httptools), a
    # request whose message is over 1 MiB: 431 when its headers are most of it,
    # 413 when its body is; one line each, no consumer runs.
    routes = Routes()

    @routes.consumer("http.request")
    async def unreachable(message: Message) -> None:
        raise AssertionError("no consumer runs")

    app = Chanlite(routes, secret_key=KEY)
    big = b"a" * (1024 * 1024)
    async with started(app):
        with caplog.at_level(logging.INFO, logger="chanlite"):
            assert await http_status(app, [(b"x-big", big)], b"") == 431
            assert await http_status(app, [(b"x-half", big[: 500 * 1024])], big[:600_000]) == 413
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "refused POST / with 431",
        "refused POST / with 413",
    ]


async def test_a_handshake_over_the_message_limit_is_refused_with_431(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = Routes()

    @routes.consumer("websocket.connect")
    async def unreachable(message: Message) -> None:
        raise AssertionError("no consumer runs")

    app = Chanlite(routes, secret_key=KEY)
    async with started(app):
        client = FakeClient(app, headers=[(b"x-big", b"a" * (1024 * 1024))])
        with caplog.at_level(logging.INFO, logger="chanlite.server"):
            client.connect()
            await client.wait_for(lambda: client.status is not None)
        assert client.status == "refused 431"
        await client.finished()
    [record] = caplog.records
    assert record.getMessage().startswith("refused a socket with 431: its websocket.connect")


# -- frames and requests the layer cannot take ------------------------------------------


class SentOrders(InMemoryChannelLayer):
    """A memory layer that notes the channel and ``order`` of each message the
    interface got in (sent without error), in turn."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent: list[tuple[str, int]] = []

    async def send_waiting(
        self, channel: str, message: dict[str, Any], timeout: float, *, owned: bool = False
    ) -> None:
        order = message.get("order", -1)
        await super().send_waiting(channel, message, timeout, owned=owned)
        self.sent.append((channel, order))


async def test_a_frame_that_was_never_sent_gives_its_order_number_back() -> None:
    # A frame that meets a full channel closes its socket with 1013 and never reaches
    # the layer; the disconnect takes its number, so an ordered app does not wait for
    # a frame that does not exist.
    gate = threading.Event()
    layer = SentOrders(capacity=1)
    app = Chanlite(blocked_routes(gate, []), layer=layer, secret_key=KEY, receive_full_timeout=0.5)
    app.threads = 1
    async with started(app):
        try:
            (client,) = await open_clients(app, 1)
            for n in range(4):  # the consumer is blocked: one of these meets a full channel
                client.send_text(str(n))
            await client.wait_for(lambda: bool(client.of_type("websocket.close")))
            assert client.of_type("websocket.close")[0]["code"] == 1013
        finally:
            gate.set()
        await until(lambda: any(channel == "websocket.disconnect" for channel, _ in layer.sent))
    frames = [order for channel, order in layer.sent if channel == "websocket.receive"]
    disconnects = [order for channel, order in layer.sent if channel == "websocket.disconnect"]
    assert frames == list(range(1, len(frames) + 1)) and len(frames) < 4
    assert disconnects == [len(frames) + 1]


class FailingLayer(InMemoryChannelLayer):
    """A memory layer whose sends to ``http.request`` fail, as Redis's do when it is
    down."""

    async def send(self, channel: str, content: dict[str, Any]) -> None:
        if channel == "http.request":
            raise ConnectionError("the layer's server is unreachable")
        await super().send(channel, content)


async def test_an_http_request_the_layer_cannot_take_gets_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = Routes()

    @routes.consumer("http.request")
    async def unreachable(message: Message) -> None:
        raise AssertionError("no consumer runs")

    app = Chanlite(routes, layer=FailingLayer(), secret_key=KEY)
    async with started(app):
        with caplog.at_level(logging.INFO, logger="chanlite"):
            assert await http_status(app, [], b"") == 503
            assert await http_status(app, [], b"") == 503  # and it goes on serving
    lines = [r.getMessage() for r in caplog.records if r.name == "chanlite.server"]
    assert (
        lines
        == [
            "answered 503: the channel layer failed (ConnectionError: "
            "the layer's server is unreachable)"
        ]
        * 2
    )
    assert all(r.exc_info is None for r in caplog.records)


class Halt(BaseException):
    """Stands for a KeyboardInterrupt or SystemExit raised inside a socket write."""


async def test_a_broadcast_stopped_by_a_base_exception_leaves_no_socket_waiting_on_it() -> None:
    # The batch never started its other writes: those sockets must write their next
    # reply at once, not queue it behind a write that will never come.
    texts: dict[str, list[str]] = {"halts": [], "other": []}

    def recorder(name: str) -> Any:
        async def send(message: dict[str, Any]) -> None:
            if message.get("text") == "halt":
                raise Halt
            if message["type"] == "websocket.send":
                texts[name].append(message["text"])

        return send

    halts, other = (
        sockets.Socket(recorder(name), f"p!{name}", 10, Metrics()) for name in ("halts", "other")
    )
    for sock in (halts, other):
        sock.deliver({"accept": True})
    with pytest.raises(Halt), sockets.Writes() as writes:
        halts.deliver({"text": "halt"}, writes)
        other.deliver({"text": "never started"}, writes)
    other.deliver({"text": "after"})
    halts.deliver({"text": "after"})
    assert texts == {"halts": ["after"], "other": ["after"]}
