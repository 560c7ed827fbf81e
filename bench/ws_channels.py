"""Suite ``ws-channels``: chanlite's WebSocket server against Channels 4 on uvicorn.

Echo (``async def`` against ``AsyncWebsocketConsumer``, ``def`` against
``WebsocketConsumer``), fan-out through groups, connects per second and idle memory
per connection. The numbers come from :func:`bench.ws.measurements`, shared with
``ws-starlette``: one run measures every server side by side.
"""

from __future__ import annotations

from .core import Config, Row
from .ws import measurements
from .ws_rows import (
    Versus,
    connect_rows,
    default_capacity_row,
    echo_rows,
    fanout_rows,
    memory_row,
    method,
)

NAME = "ws-channels"
TITLE = "WebSocket servers: chanlite vs Channels 4 (InMemoryChannelLayer), both on uvicorn"
BASELINE = "Channels 4"
DESCRIPTION = (
    "chanlite's `async def` and `def` echo consumers against Channels 4's "
    "`AsyncWebsocketConsumer` and `WebsocketConsumer`; chanlite's "
    "`Group(...).send` against `channel_layer.group_send` to `AsyncWebsocketConsumer` "
    "members. Ratio = chanlite median / Channels 4 median. " + method()
)

#: Targets from the issue, as ratios to Channels 4 in the same run.
ASYNC_ECHO_TARGETS = {50: 2.0}
SYNC_ECHO_TARGETS = {50: 1.2}
FANOUT_TARGETS = {1_000: 5.0}


async def run(config: Config) -> list[Row]:
    """Every ws scenario, chanlite against Channels 4."""
    results = await measurements(config)
    async_echo = Versus("chanlite-async", "channels-async", BASELINE)
    sync_echo = Versus("chanlite-sync", "channels-sync", BASELINE)
    return [
        *echo_rows(results, async_echo, "async", ASYNC_ECHO_TARGETS),
        *echo_rows(results, sync_echo, "sync", SYNC_ECHO_TARGETS),
        *fanout_rows(results, Versus("chanlite-big", "channels", BASELINE), FANOUT_TARGETS),
        default_capacity_row(results, Versus("chanlite", "channels", BASELINE)),
        *connect_rows(
            results,
            [Versus(server, "channels", BASELINE) for server in ("chanlite", "chanlite-big")],
            goal=None,
        ),
        memory_row(results, Versus("chanlite", "channels", BASELINE)),
    ]
