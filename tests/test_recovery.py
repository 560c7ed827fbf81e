"""Recovery (DESIGN §11) through the interface, in-process: ``chanlite.v1`` clients
that drop and come back, raw clients that do not take part, and what the app sees.

Real processes, a real network client and a browser are in ``tests/e2e/test_recovery.py``
and ``tests/browser``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chanlite import Chanlite, Group, Message, Routes

from .asgi_clients import FakeClient, started

pytestmark = pytest.mark.anyio

ROOM = "room-lobby"
SUBPROTOCOLS = ["chanlite.v1"]


def room_routes(seen: list[dict[str, Any]] | None = None, subprotocol: str | None = None) -> Routes:
    routes = Routes()

    @routes.consumer("websocket.connect")
    async def join(message: Message) -> None:
        recovered = await Group(ROOM).aadd(message.reply_channel)  # type: ignore[arg-type]
        if seen is not None:
            seen.append({**message.content, "recovered": recovered})
        accept: dict[str, Any] = {"accept": True}
        if subprotocol:
            accept["subprotocol"] = subprotocol
        await message.reply_channel.asend(accept)  # type: ignore[union-attr]

    @routes.consumer("websocket.receive")
    async def say(message: Message) -> None:
        await Group(ROOM).asend({"text": message["text"]})

    return routes


def app_with_history(size: int = 1000, **options: Any) -> Chanlite:
    return Chanlite(room_routes(**options), group_history={"room-*": size})


def v1_client(app: Chanlite, positions: dict[str, str] | None = None, **query: str) -> FakeClient:
    params = dict(query)
    if positions is not None:
        params["chanlite_positions"] = json.dumps(positions)
    return FakeClient(app, query_string=urlencode(params).encode(), subprotocols=SUBPROTOCOLS)


def frames(client: FakeClient) -> list[dict[str, Any]]:
    return [json.loads(text) for text in client.texts]


def recovery_of(client: FakeClient) -> dict[str, Any] | None:
    found = [frame["recovery"] for frame in frames(client) if "recovery" in frame]
    return found[-1] if found else None


def offsets(client: FakeClient) -> list[int]:
    return [int(frame["p"].rpartition(":")[2]) for frame in frames(client) if "p" in frame]


async def opened(client: FakeClient) -> dict[str, Any]:
    """Connect a v1 client; wait for its recovery frame and return it."""
    client.connect()
    await client.wait_for(lambda: recovery_of(client) is not None)
    recovery = recovery_of(client)
    assert recovery is not None
    return recovery


async def send_room(app: Chanlite, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        await Group(ROOM, app.layer).asend({"text": f"m{n}"})


async def leave(client: FakeClient) -> None:
    client.close()
    await client.finished()


async def test_a_raw_client_gets_plain_frames_from_a_group_with_history() -> None:
    async with started(app_with_history()) as app:
        client = FakeClient(app)
        client.connect()
        await client.wait_for(lambda: client.status == "open")
        await send_room(app, 2)
        await client.wait_for(lambda: len(client.texts) == 2)
        assert client.texts == ["m0", "m1"]
        accept = client.of_type("websocket.accept")[0]
        assert "subprotocol" not in accept
        await leave(client)


async def test_a_first_v1_connect_learns_its_positions_and_gets_envelopes() -> None:
    seen: list[dict[str, Any]] = []
    async with started(Chanlite(room_routes(seen), group_history={"room-*": 10})) as app:
        await send_room(app, 3)  # before it joins: not its business
        client = v1_client(app, other="kept", chanlite_client="tab-1")
        recovery = await opened(client)
        assert client.of_type("websocket.accept")[0]["subprotocol"] == "chanlite.v1"
        assert recovery["recovered"] == {}
        position = recovery["positions"][ROOM]
        assert position.endswith(":3")
        # The app sees the request as any other, with the positions and the id.
        assert seen[0]["query_string"] == "other=kept"
        assert seen[0]["subprotocols"] == []
        assert (seen[0]["positions"], seen[0]["client_id"]) == ({}, "tab-1")
        assert seen[0]["recovered"] is False
        await send_room(app, 1, start=3)
        await client.wait_for(lambda: len(offsets(client)) == 1)
        assert frames(client)[-1] == {"g": ROOM, "p": position[:-1] + "4", "text": "m3"}
        await leave(client)


async def test_a_client_that_comes_back_gets_all_it_missed_in_order_once() -> None:
    seen: list[dict[str, Any]] = []
    async with started(Chanlite(room_routes(seen), group_history={"room-*": 1000})) as app:
        first = v1_client(app)
        position = (await opened(first))["positions"][ROOM]
        await leave(first)
        await send_room(app, 100)
        back = v1_client(app, {ROOM: position})
        recovery = await opened(back)
        assert recovery["recovered"] == {ROOM: True}
        assert [each["recovered"] for each in seen] == [False, True]  # what add() said
        texts = [frame["text"] for frame in frames(back) if "p" in frame]
        assert texts == [f"m{n}" for n in range(100)]
        assert offsets(back) == list(range(1, 101))
        # Live messages follow, with no gap and no duplicate.
        await send_room(app, 2, start=100)
        await back.wait_for(lambda: len(offsets(back)) == 102)
        assert offsets(back) == list(range(1, 103))
        assert recovery["positions"][ROOM].endswith(":100")
        await leave(back)


async def test_recovery_while_a_sender_floods_has_no_gap_and_no_duplicate() -> None:
    async with started(app_with_history()) as app:
        first = v1_client(app)
        position = (await opened(first))["positions"][ROOM]
        await leave(first)
        await send_room(app, 50)
        flooding = asyncio.get_running_loop().create_task(send_room(app, 400, start=50))
        back = v1_client(app, {ROOM: position})
        assert (await opened(back))["recovered"] == {ROOM: True}
        await flooding
        await back.wait_for(lambda: len(offsets(back)) >= 450)
        assert offsets(back) == list(range(1, 451))
        assert [frame["text"] for frame in frames(back) if "p" in frame][-1] == "m449"
        await leave(back)


async def test_recoveries_are_counted() -> None:
    async with started(Chanlite(room_routes(), group_history={"room-*": 5}, metrics=True)) as app:
        first = v1_client(app)
        position = (await opened(first))["positions"][ROOM]
        await leave(first)
        await send_room(app, 3)
        await opened(back := v1_client(app, {ROOM: position, "room-gone": "abcd1234:1"}))
        await leave(back)
        await send_room(app, 10)
        await opened(late := v1_client(app, {ROOM: position}))
        await leave(late)
        scraped = {
            (sample.name, sample.labels.get("outcome")): sample.value
            for family in text_string_to_metric_families(await scrape(app))
            for sample in family.samples
        }
        assert scraped[("chanlite_recoveries_total", "recovered")] == 1
        assert scraped[("chanlite_recoveries_total", "not_recovered")] == 2
        assert scraped[("chanlite_recovery_replayed_messages_total", None)] == 3


async def scrape(app: Chanlite) -> str:
    """``GET /metrics`` through the app's ASGI interface."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "root_path": "",
             "query_string": b"", "headers": [], "scheme": "http", "http_version": "1.1",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip
    await app(scope, receive, send)
    return b"".join(message.get("body", b"") for message in sent).decode()


@pytest.mark.parametrize("stale", ["another-epoch", "too-old", "ahead"])
async def test_a_position_that_cannot_be_recovered_says_so_and_replays_nothing(
    stale: str,
) -> None:
    async with started(app_with_history(size=10)) as app:
        first = v1_client(app)
        position = (await opened(first))["positions"][ROOM]
        await leave(first)
        await send_room(app, 20)  # more than the 10 kept
        epoch = position.partition(":")[0]
        presented = {
            "another-epoch": ("0" if epoch != "0" * 8 else "1") * 8 + ":0",
            "too-old": position,
            "ahead": f"{epoch}:99",
        }[stale]
        back = v1_client(app, {ROOM: presented})
        recovery = await opened(back)
        assert recovery["recovered"] == {ROOM: False}
        assert recovery["positions"][ROOM] == f"{epoch}:20"
        assert offsets(back) == []  # never wrong data
        await send_room(app, 1, start=20)
        await back.wait_for(lambda: offsets(back) == [21])
        await leave(back)


async def test_a_group_the_app_did_not_rejoin_is_not_recovered() -> None:
    async with started(app_with_history()) as app:
        client = v1_client(app, {"room-elsewhere": "abcd1234:1", ROOM: "abcd1234:0"})
        recovery = await opened(client)
        assert recovery["recovered"] == {"room-elsewhere": False, ROOM: False}
        await leave(client)


async def test_malformed_positions_are_left_out() -> None:
    async with started(app_with_history()) as app:
        client = FakeClient(
            app,
            query_string=b"chanlite_positions=not-json&chanlite_client=bad%20id",
            subprotocols=SUBPROTOCOLS,
        )
        recovery = await opened(client)
        assert recovery["recovered"] == {}
        await leave(client)


async def test_an_app_that_picks_its_own_subprotocol_gets_plain_frames() -> None:
    async with started(app_with_history(subprotocol="graphql-ws")) as app:
        first = v1_client(app)
        first.subprotocols.append("graphql-ws")
        first.connect()
        await first.wait_for(lambda: first.status == "open")
        assert first.of_type("websocket.accept")[0]["subprotocol"] == "graphql-ws"
        await send_room(app, 1)
        await first.wait_for(lambda: first.texts == ["m0"])
        await leave(first)


async def test_a_connect_the_interface_answers_itself_recovers_nothing() -> None:
    routes = Routes()  # no connect consumer: the interface accepts on its own
    async with started(Chanlite(routes, group_history={"room-*": 10})) as app:
        client = v1_client(app, {ROOM: "abcd1234:3"})
        recovery = await opened(client)
        assert recovery == {"recovered": {ROOM: False}, "positions": {}}
        await leave(client)
