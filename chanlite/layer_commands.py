"""The ``chanlite`` commands that operate a layer rather than serve an app:
``send``, ``stats`` and ``flush``. Each says what it did."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson

from .config import LAYER_ENV
from .layers.base import BaseChannelLayer
from .names import validate_channel_name, validate_group_name
from .stats_watch import DEFAULT_INTERVAL, watch_stats
from .targets import UsageError, cross_process_layer


def cmd_send(args: argparse.Namespace) -> int:
    """``chanlite send``: one message to a channel or group."""
    try:
        content = orjson.loads(args.json)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"the message is not valid JSON: {exc}") from None
    if not isinstance(content, dict):
        raise UsageError('the message must be a JSON object, e.g. \'{"text": "hi"}\'')
    if args.group:
        validate_group_name(args.channel)
    else:
        validate_channel_name(args.channel)
    layer = cross_process_layer(args.layer, "send")
    asyncio.run(_send(layer, args.channel, content, args.group))
    kind = "group" if args.group else "channel"
    print(f"sent {args.json} to {kind} {args.channel!r} on {layer!r}")
    return 0


async def _send(layer: BaseChannelLayer, name: str, content: dict[str, Any], group: bool) -> None:
    try:
        if group:
            await layer.group_send(name, content)
        else:
            await layer.send(name, content)
    finally:
        await layer.aclose()


def cmd_stats(args: argparse.Namespace) -> int:
    """``chanlite stats``: channel depths and group sizes, where the layer can tell;
    with ``--watch``, refreshed live (see :mod:`chanlite.stats_watch`)."""
    if not args.watch and (args.interval is not None or args.metrics):
        raise UsageError("--interval and --metrics go with --watch")
    layer = cross_process_layer(args.layer, "stats")
    if args.watch:
        url = args.layer or os.environ.get(LAYER_ENV, "")
        interval = args.interval or DEFAULT_INTERVAL
        return watch_stats(layer, url, interval=interval, metrics_urls=args.metrics or ())
    stats = asyncio.run(_stats(layer))
    if stats is None:
        print(f"{type(layer).__name__} cannot report statistics")
        return 0
    for section in ("channels", "groups"):
        print(f"{section}:")
        for name, size in sorted(stats.get(section, {}).items()):
            print(f"  {name:<40} {size}")
    return 0


async def _stats(layer: BaseChannelLayer) -> dict[str, Any] | None:
    try:
        return await layer.stats()
    finally:
        await layer.aclose()


def cmd_flush(args: argparse.Namespace) -> int:
    """``chanlite flush``: delete every message and group of the layer, after asking
    on a terminal (``--yes`` does not ask; without a terminal nothing is asked).

    What it reports deleting was counted just before: a message sent meanwhile is
    deleted too.
    """
    layer = cross_process_layer(args.layer, "flush")
    contents = _describe(asyncio.run(_stats(layer)))
    if not args.yes and sys.stdin.isatty():
        question = (
            f"Delete {contents} from {layer!r}? Live sockets lose their group memberships. [y/N] "
        )
        if input(question).strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    asyncio.run(_flush(cross_process_layer(args.layer, "flush")))
    print(f"deleted {contents} from {layer!r}")
    return 0


def _describe(stats: dict[str, Any] | None) -> str:
    """``stats`` in words: how many messages, channels, groups and members."""
    if stats is None:
        return "every channel and group"
    channels, groups = stats.get("channels", {}), stats.get("groups", {})
    return (
        f"{_count(sum(channels.values()), 'message')} in {_count(len(channels), 'channel')} "
        f"and {_count(len(groups), 'group')} with {_count(sum(groups.values()), 'member')}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


async def _flush(layer: BaseChannelLayer) -> None:
    try:
        await layer.flush()
    finally:
        await layer.aclose()
