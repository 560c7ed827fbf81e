"""Building layers from URLs and options, and what capacity and expiry do."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from chanlite import ChannelFull, get_layer


async def main() -> None:
    # Options come from the URL's query string, or as keyword arguments.
    layer = get_layer("memory://?capacity=2", channel_capacity={"jobs.*": 3})
    await layer.send("chat", {"n": 1})
    await layer.send("chat", {"n": 2})
    try:
        await layer.send("chat", {"n": 3})
        raise AssertionError("a third message fit a channel of capacity 2")
    except ChannelFull as full:
        assert (full.channel, full.capacity) == ("chat", 2)
    for n in (1, 2, 3):
        await layer.send("jobs.email", {"n": n})  # "jobs.*" holds 3

    # A keyword argument wins over the URL. Nobody receives: the message expires.
    short = get_layer("memory://?expiry=30", expiry=0.1)
    await short.send("chat", {"n": 1})
    await asyncio.sleep(0.3)
    assert await short.receive(["chat"], timeout=0) == (None, None)

    # A group send never raises ChannelFull: full members are skipped and counted.
    await layer.group_add("room", "alice!1")
    await layer.group_add("room", "bob!1")
    for n in (1, 2, 3):
        await layer.group_send("room", {"n": n})
    assert layer.group_full_skips == 2  # the third message, once for each member

    # Two layer objects on one SQLite file share channels and groups, as two
    # processes on one machine would.
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory, 'layer.db')}"  # sqlite:////abs/path.db
        sender, receiver = get_layer(url), get_layer(url)
        await sender.send("tasks", {"job": "resize", "image": b"\x89PNG"})
        assert await receiver.receive(["tasks"], timeout=1) == (
            "tasks",
            {"job": "resize", "image": b"\x89PNG"},
        )
        await sender.aclose()
        await receiver.aclose()

    # Several Redis URLs, comma-separated, make one sharded layer. Nothing connects
    # until the first command.
    redis = get_layer("redis://a.internal:6379/0,redis://b.internal:6379/0?prefix=myapp")
    assert "a.internal:6379/0" in repr(redis) and "b.internal:6379/0" in repr(redis)
    await redis.aclose()

    try:
        get_layer("memory://?capacty=10")
        raise AssertionError("a misspelt option was accepted")
    except ValueError as error:  # ConfigurationError names the option
        assert "capacty" in str(error)


if __name__ == "__main__":
    asyncio.run(main())
    print("capacity, expiry, group skips, SQLite and Redis URLs behave as described")
