"""Django Channels 4 on channels_redis, under uvicorn with ``--factory``:

* ``uvicorn bench.apps.channels_redis_echo:core --factory``: ``RedisChannelLayer`` on
  the Redis URL in ``CHANLITE_BENCH_CHANNELS_REDIS``;
* ``uvicorn bench.apps.channels_redis_echo:pubsub --factory``:
  ``RedisPubSubChannelLayer`` on the URL in ``CHANLITE_BENCH_CHANNELS_PUBSUB``.

The consumers and routes are those of :mod:`bench.apps.channels_echo` (``/echo/``,
``/sync-echo/``, ``/room/NAME/``); only the channel layer differs, at channels_redis's
defaults.
"""

from __future__ import annotations

import os
from typing import Any

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]

#: Environment variables naming the Redis URL of each layer.
CORE_ENV = "CHANLITE_BENCH_CHANNELS_REDIS"
PUBSUB_ENV = "CHANLITE_BENCH_CHANNELS_PUBSUB"


def core() -> Any:
    """The Channels application on ``RedisChannelLayer``."""
    return application_on("channels_redis.core.RedisChannelLayer", os.environ[CORE_ENV])


def pubsub() -> Any:
    """The Channels application on ``RedisPubSubChannelLayer``."""
    return application_on("channels_redis.pubsub.RedisPubSubChannelLayer", os.environ[PUBSUB_ENV])


def application_on(backend: str, url: str) -> Any:
    """Configure Django with ``backend`` on ``url``, then build the application
    (``channels_echo`` leaves settings that are already configured alone)."""
    settings.configure(
        DEBUG=False,
        SECRET_KEY="chanlite-bench-not-a-secret-0123456789",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        DATABASES={},
        CHANNEL_LAYERS={"default": {"BACKEND": backend, "CONFIG": {"hosts": [url]}}},
    )
    django.setup()
    from .channels_echo import application

    return application
