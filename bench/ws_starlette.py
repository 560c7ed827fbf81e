"""Suite ``ws-starlette``: chanlite's WebSocket server against raw Starlette on uvicorn.

Raw Starlette endpoints (no channel layer, rooms as in-process sets of sockets) are
the ceiling a Starlette-based interface server can reach; the targets say how close
chanlite's ``async def`` consumers should come. The numbers come from
:func:`bench.ws.measurements`, shared with ``ws-channels``.
"""

from __future__ import annotations

from .core import Config, Row
from .ws import measurements
from .ws_rows import (
    Versus,
    ceiling,
    connect_rows,
    default_capacity_row,
    echo_rows,
    fanout_rows,
    memory_row,
    method,
)

NAME = "ws-starlette"
TITLE = "WebSocket servers: chanlite vs raw Starlette, both on uvicorn"
BASELINE = "Starlette"
DESCRIPTION = (
    "chanlite's `async def` echo consumer against a raw Starlette WebSocket endpoint; "
    "chanlite's `Group(...).send` against a loop over an in-process set of sockets. "
    "The *connect consumer* rows serve the same echo from a third chanlite process "
    "(`bench.apps.chanlite_echo:accepting_routes`, `memory://` at its defaults) whose "
    "`/echo/` also has a routed `websocket.connect` consumer, as real apps have: an "
    '`async def` that accepts with `message.reply_channel.send({"accept": True})`, so '
    "every connect goes through the worker, where the plain echo's connects are "
    "answered by the interface; they have no target. "
    "Ratio = chanlite median / raw Starlette median. " + method()
)

#: Targets from the issue, as ratios to raw Starlette in the same run.
ECHO_TARGETS = {50: 0.6}
CONNECT_TARGET = 0.8
MEMORY_CEILING = 1.15


async def run(config: Config) -> list[Row]:
    """Every ws scenario, chanlite against raw Starlette."""
    results = await measurements(config)
    accepting = Versus("chanlite-accept", "starlette", BASELINE)
    return [
        *echo_rows(results, Versus("chanlite-async", "starlette", BASELINE), "async", ECHO_TARGETS),
        *echo_rows(results, accepting, "async, connect consumer", {}),
        *fanout_rows(results, Versus("chanlite-big", "starlette", BASELINE), {}),
        default_capacity_row(results, Versus("chanlite", "starlette", BASELINE)),
        *connect_rows(
            results,
            [Versus(server, "starlette", BASELINE) for server in ("chanlite", "chanlite-big")],
            goal=CONNECT_TARGET,
        ),
        *connect_rows(results, [accepting], goal=None),
        memory_row(
            results, Versus("chanlite", "starlette", BASELINE), target=ceiling(MEMORY_CEILING)
        ),
    ]
