"""chanlite's micro-benchmarks: ``python -m bench`` from the repository root.

A suite is a module with ``NAME``, ``TITLE``, ``DESCRIPTION``, ``BASELINE`` and
``async def run(config) -> list[Row]`` (see :class:`bench.core.Suite`). Register it in
:data:`SUITES` and it can be selected with ``--only NAME`` and gets its own section
in ``docs/benchmarks.md``. Suites are imported only when selected, so one that needs a
running server or a Redis does not burden the others.
"""

from __future__ import annotations

import importlib
from typing import cast

from .core import Suite

#: Suite name -> module, in the order a full run goes through them.
SUITES: dict[str, str] = {
    "layers": "bench.layers",
    "dispatch": "bench.dispatch",
    "ws-channels": "bench.ws_channels",
    "ws-starlette": "bench.ws_starlette",
    "redis-layers": "bench.redis_layers",
    "ws-redis": "bench.ws_redis",
    "redis-cluster": "bench.redis_cluster",
    "redis-clients": "bench.redis_clients",
    "ws-decorators": "bench.ws_decorators",
    "ws-observability": "bench.ws_observability",
    "observability-cost": "bench.observability_cost",
    "history-cost": "bench.history_cost",
}


def load_suite(name: str) -> Suite:
    """Import the module of suite ``name``."""
    return cast(Suite, importlib.import_module(SUITES[name]))
