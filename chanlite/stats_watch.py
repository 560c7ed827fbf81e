"""``chanlite stats --watch``: a live view of a channel layer, and of what
``/metrics`` endpoints count, refreshed every interval.

Each refresh shows every channel's depth and its change per second since the last
refresh, every group's size, and totals; with ``--metrics`` URLs, also the sockets
open now and the rates of frames and messages, summed over the endpoints. On a
terminal the view is redrawn in place with the cursor hidden; elsewhere each refresh
is a block of plain lines. A layer or an endpoint that fails is one line of the view
and is asked again at the next refresh; only a layer that fails at the first refresh
ends the watch. SIGINT (Ctrl-C) and SIGTERM end it with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
import os
import re
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from .exceptions import LayerError
from .layers.base import BaseChannelLayer

#: Seconds between refreshes when ``--interval`` is not given.
DEFAULT_INTERVAL = 1.0
#: Seconds an endpoint has to answer before its line says it failed; this also bounds
#: how long Ctrl-C waits for a fetch under way (its thread cannot be interrupted).
FETCH_TIMEOUT = 2.0
#: The gauge of open sockets, summed over the endpoints (named in docs/observability.md).
CONNECTIONS = "chanlite_websocket_connections_open"
#: The counters shown as rates per second, summed over the endpoints, with their labels.
COUNTERS = {
    "chanlite_websocket_frames_received_total": "frames received/s",
    "chanlite_websocket_frames_sent_total": "frames sent/s",
    "chanlite_messages_sent_total": "messages sent/s",
    "chanlite_messages_received_total": "messages received/s",
}
# VT100 sequences, which every terminal in use understands.
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
# The signals that end a watch.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Width of the name column (as in plain ``chanlite stats``).
NAME_WIDTH = 40


def interval_seconds(value: str) -> float:
    """``--interval``: a positive, finite number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def metrics_url(value: str) -> str:
    """``--metrics``: an ``http://`` or ``https://`` URL."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {value!r}")
    return value


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit to show."""
    return re.sub(r"(://[^:@/,]*:)[^@/]*@", r"\1***@", url)


@dataclass(frozen=True)
class Reading:
    """What one source reported at ``at`` (``time.monotonic()``): depths by channel
    for the layer, metric values by name for an endpoint."""

    at: float
    values: Mapping[str, float]


def per_second(before: float, after: float, seconds: float) -> float:
    """How fast a value went from ``before`` to ``after`` in ``seconds`` (0 in no time)."""
    return (after - before) / seconds if seconds > 0 else 0.0


def depth_changes(before: Reading | None, now: Reading) -> dict[str, tuple[int, float | None]]:
    """Each channel's depth in ``now`` and its change per second since ``before``
    (``None`` without ``before``), sorted by name. A channel missing from a reading is
    empty, so one that emptied since ``before`` is listed once, at depth 0."""
    old = before.values if before else {}
    changes: dict[str, tuple[int, float | None]] = {}
    for name in sorted({*now.values, *old}):
        depth = now.values.get(name, 0)
        rate = None if before is None else per_second(old.get(name, 0), depth, now.at - before.at)
        changes[name] = (int(depth), rate)
    return changes


def counter_rates(
    before: Mapping[str, Reading], now: Mapping[str, Reading]
) -> dict[str, float | None]:
    """Each of :data:`COUNTERS` per second, by label, summed over the endpoints (by
    URL) read both times; ``None`` if none was."""
    both = [(before[url], reading) for url, reading in now.items() if url in before]
    return {
        label: sum(_counter_rate(old, new, name) for old, new in both) if both else None
        for name, label in COUNTERS.items()
    }


def _counter_rate(before: Reading, now: Reading, name: str) -> float:
    # A counter that went down belongs to a restarted process, which counted from 0.
    was, count = before.values.get(name, 0.0), now.values.get(name, 0.0)
    return per_second(0.0 if count < was else was, count, now.at - before.at)


def parse_metrics(text: str) -> dict[str, float]:
    """:data:`CONNECTIONS` and :data:`COUNTERS` in Prometheus ``text``, each summed
    over its labels (0 when absent). Raises ValueError for text in another format."""
    values = dict.fromkeys([CONNECTIONS, *COUNTERS], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name] += sample.value
    return values


def fetch_metrics(url: str) -> dict[str, float]:
    """:func:`parse_metrics` of what ``url`` serves (blocking). Raises OSError,
    ``http.client.HTTPException`` or ValueError, with the reason in words."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None
    return parse_metrics(text)


@dataclass(frozen=True)
class LayerView:
    """The layer's part of a refresh: depths with their changes per second, and group
    sizes; or the ``error`` that kept the layer from telling."""

    channels: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class MetricsView:
    """The endpoints' part of a refresh: open sockets summed over those that answered
    (``None`` if none did), :func:`counter_rates`, and each failing endpoint's error."""

    connections: float | None = None
    rates: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Watch:
    """Reads a layer and endpoints once per refresh, keeping the latest good reading
    of each: the next refresh counts its rates from those."""

    def __init__(self, layer: BaseChannelLayer, urls: Sequence[str]) -> None:
        self.layer = layer
        self.urls = list(dict.fromkeys(urls))
        self._first = True
        self._depths: Reading | None = None
        self._scrapes: dict[str, Reading] = {}

    async def refresh(self) -> tuple[LayerView, MetricsView]:
        """Read the layer and every endpoint at once. Their errors become lines of the
        view, except the :class:`~chanlite.LayerError` of the first refresh, which is
        raised: a layer that never answered is no use to watch."""
        return await asyncio.gather(self._read_layer(), self._read_endpoints())

    async def _read_layer(self) -> LayerView:
        first, self._first = self._first, False
        try:
            stats = await self.layer.stats()
        except LayerError as exc:
            if first:
                raise
            return LayerView(error=f"layer error: {exc}")
        if stats is None:
            return LayerView(error=f"{type(self.layer).__name__} cannot report statistics")
        now = Reading(time.monotonic(), stats.get("channels", {}))
        channels = depth_changes(self._depths, now)
        self._depths = now
        return LayerView(channels, dict(sorted(stats.get("groups", {}).items())))

    async def _read_endpoints(self) -> MetricsView:
        got = await asyncio.gather(*(_read_endpoint(url) for url in self.urls))
        results = dict(zip(self.urls, got, strict=True))
        scrapes = {url: r for url, r in results.items() if isinstance(r, Reading)}
        errors = {url: r for url, r in results.items() if isinstance(r, str)}
        rates = counter_rates(self._scrapes, scrapes)
        self._scrapes.update(scrapes)
        connections = sum(s.values[CONNECTIONS] for s in scrapes.values()) if scrapes else None
        return MetricsView(connections, rates, errors)


async def _read_endpoint(url: str) -> Reading | str:
    """The endpoint's reading, or its error in words."""
    try:
        values = await asyncio.to_thread(fetch_metrics, url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return Reading(time.monotonic(), values)


def header(url: str, interval: float, wall: float) -> str:
    """The first line of a refresh: the local time at ``wall`` (``time.time()``), the
    interval and the layer's URL (password masked; last, as the longest)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
    return f"{stamp}  every {interval:g}s  {masked(url)}"


def render(top: str, layer: LayerView, metrics: MetricsView | None) -> list[str]:
    """The lines of one refresh under ``top``; the metrics part only with ``metrics``."""
    lines = [top, *_layer_lines(layer)]
    if metrics is not None:
        lines += _metrics_lines(metrics)
    return lines


def _layer_lines(layer: LayerView) -> list[str]:
    if layer.error is not None:
        return [layer.error]
    depths = [depth for depth, _ in layer.channels.values()]
    rates = [rate for _, rate in layer.channels.values()]
    total_rate = None if not rates or None in rates else sum(rate or 0.0 for rate in rates)
    channels = f"total ({_plural(len(depths), 'channel')})"
    groups = f"total ({_plural(len(layer.groups), 'group')})"
    return [
        _row("channel", "depth", "change/s"),
        *(
            _row(f"  {name}", depth, _number(rate, "+.1f"))
            for name, (depth, rate) in layer.channels.items()
        ),
        _row(channels, sum(depths), _number(total_rate, "+.1f")),
        _row("group", "members"),
        *(_row(f"  {name}", size) for name, size in layer.groups.items()),
        _row(groups, sum(layer.groups.values())),
    ]


def _metrics_lines(metrics: MetricsView) -> list[str]:
    return [
        _row("open connections", _number(metrics.connections, ".0f")),
        *(_row(label, _number(rate, ".1f")) for label, rate in metrics.rates.items()),
        *(f"cannot read {masked(url)}: {error}" for url, error in metrics.errors.items()),
    ]


def _row(name: str, *cells: object) -> str:
    return f"{name:<{NAME_WIDTH}}" + "".join(f" {cell:>9}" for cell in cells)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def fit(lines: Sequence[str], columns: int, rows: int) -> list[str]:
    """``lines`` cut to a screen of ``columns`` x ``rows``: longer lines are cut, and
    the lines past the last row give way to one that says how many there were."""
    cut = [line[:columns] for line in lines]
    if len(cut) <= rows:
        return cut
    kept = max(rows - 1, 0)
    return [*cut[:kept], f"... {len(cut) - kept} more lines"[:columns]]


def terminal_frame(lines: Sequence[str]) -> str:
    """``lines`` as one write that redraws a terminal from its top-left corner, over
    whatever the last frame left (no newline after the last line: a full screen
    does not scroll)."""
    return HOME + "\n".join(line + CLEAR_LINE for line in lines) + CLEAR_BELOW


def show(out: TextIO, lines: Sequence[str]) -> None:
    """Write one refresh to ``out``: over the last one on a terminal (fit to its
    size), else as plain lines and an empty line."""
    if out.isatty():
        size = shutil.get_terminal_size()
        out.write(terminal_frame(fit(lines, size.columns, size.lines)))
    else:
        out.write("".join(line + "\n" for line in lines) + "\n")
    out.flush()


def watch_stats(
    layer: BaseChannelLayer,
    url: str,
    *,
    interval: float,
    metrics_urls: Sequence[str] = (),
    out: TextIO | None = None,
) -> int:
    """Show the live view of ``layer`` (reached at ``url``) and of ``metrics_urls`` on
    ``out`` (stdout) every ``interval`` seconds until SIGINT or SIGTERM, then close
    ``layer`` and return 0. On a terminal the cursor is hidden meanwhile, and shown
    again however the watch ends. Raises the LayerError of a first refresh."""
    out = out or sys.stdout
    terminal = out.isatty()
    if terminal:
        out.write(HIDE_CURSOR)
    try:
        asyncio.run(_watch(Watch(layer, metrics_urls), out, url, interval))
    except KeyboardInterrupt:
        pass  # Ctrl-C before the watch took SIGINT over
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to show
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    finally:
        if terminal:
            out.write("\n" + SHOW_CURSOR)  # below the last frame
            out.flush()
    return 0


async def _watch(watch: Watch, out: TextIO, url: str, interval: float) -> None:
    """Refresh until SIGINT or SIGTERM, then close the layer. Both signals are taken
    even when the process started with them ignored (as a shell starts background
    jobs)."""
    loop = asyncio.get_running_loop()
    refreshing = asyncio.ensure_future(_refresh(watch, out, url, interval))
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, refreshing.cancel)
    try:
        await asyncio.wait([refreshing])
        if not refreshing.cancelled():
            refreshing.result()  # raises what ended it: a first refresh's LayerError
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await watch.layer.aclose()


async def _refresh(watch: Watch, out: TextIO, url: str, interval: float) -> None:
    """Refresh every ``interval`` seconds, counted from the start of the last refresh."""
    while True:
        started = time.monotonic()
        layer, metrics = await watch.refresh()
        top = header(url, interval, time.time())
        show(out, render(top, layer, metrics if watch.urls else None))
        await asyncio.sleep(max(0.0, started + interval - time.monotonic()))
