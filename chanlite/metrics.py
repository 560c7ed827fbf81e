"""What one chanlite process counts, and its Prometheus exposition.

Every app (and every ``chanlite worker``) has one :class:`Metrics`. The interface, the
worker, the consumer runner and the consumers' sends count into it as things happen,
on the event loop's thread, whether or not metrics are served: a count is a plain
integer increment (about 60 ns). With ``metrics=True`` the counts are served at
``/metrics`` and consumers are also timed.

Why plain integers: a ``prometheus_client`` ``Counter.inc()`` takes a lock and costs
about 410 ns, a ``Histogram.observe()`` about 970 ns (both measured on the benchmark
machine), several times per echoed frame. So chanlite keeps its own integers and
buckets, and :class:`MetricsCollector`, a ``prometheus_client`` custom collector,
turns them into metric families when Prometheus scrapes. Counts by label are kept in
``defaultdict(int)``: an increment costs about 60 ns there, against 150 ns in a
``collections.Counter`` (a dict subclass written in Python), on CPython 3.12.

Labels are bounded: a ``channel`` label is a routed or protocol channel's name,
``reply`` for every process-specific name (it holds ``!``) and ``other`` for the rest;
a ``consumer`` label is a routed consumer's qualified name. ``docs/observability.md``
lists every metric.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .protocol import HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer

#: The Content-Type of the text format :func:`exposition` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Bucket bounds (seconds) of consumer durations.
CONSUMER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Bucket bounds (seconds) of layer round trips.
LAYER_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Label values of ``chanlite_websocket_connections_total``.
OUTCOMES = ("accepted", "rejected", "timeout", "origin", "refused")
#: Label values of ``chanlite_recoveries_total``.
RECOVERY_OUTCOMES = ("recovered", "not_recovered")
# Channels every process labels by name, routed here or not.
_PROTOCOL_CHANNELS = frozenset(
    {HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT}
)


class Histogram:
    """Observations sorted into fixed buckets, as Prometheus histograms count them."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: Per bucket (not cumulative); the last one is ``+Inf``.
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        pairs, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            pairs.append((bound, float(running)))
        return pairs


class Metrics:
    """The counts of one process: its interface, its workers and its sends.

    ``routed`` is the set of channel names its routes take. ``timed``: consumers are
    timed (only worth its cost when the counts are served).
    """

    def __init__(self, routed: Iterable[str] = (), *, timed: bool = False) -> None:
        self.timed = timed
        self._named = frozenset(routed) | _PROTOCOL_CHANNELS
        #: Sockets open now.
        self.connections = 0
        #: Handshakes by outcome (:data:`OUTCOMES`).
        self.handshakes: defaultdict[str, int] = defaultdict(int)
        #: Sockets that had opened, by close code.
        self.closes: defaultdict[int, int] = defaultdict(int)
        self.frames_received = 0
        self.frames_sent = 0
        self.http_requests = 0
        #: Messages sent and received, and ChannelFull refusals, by channel label.
        self.sent: defaultdict[str, int] = defaultdict(int)
        self.received: defaultdict[str, int] = defaultdict(int)
        self.full: defaultdict[str, int] = defaultdict(int)
        self.group_sends = 0
        #: Per consumer name: durations, failures and timeouts.
        self.durations: dict[str, Histogram] = {}
        self.failures: defaultdict[str, int] = defaultdict(int)
        self.timeouts: defaultdict[str, int] = defaultdict(int)
        #: Round trips of layer calls, by operation.
        self.layer_calls: dict[str, Histogram] = {}
        #: Whether the layer answered its last probe; its outages and returns.
        self.layer_up = True
        self.layer_outages = 0
        self.layer_reconnects = 0
        #: Re-joins of ``chanlite.v1`` sockets: groups presented, by outcome
        #: (:data:`RECOVERY_OUTCOMES`), and the missed messages replayed to them.
        self.recoveries: defaultdict[str, int] = defaultdict(int)
        self.replayed_messages = 0

    def label(self, channel: str) -> str:
        """The ``channel`` label value of a channel name."""
        if "!" in channel:
            return "reply"
        return channel if channel in self._named else "other"

    def message_sent(self, channel: str) -> None:
        """Count one message sent to ``channel``."""
        self.sent[self.label(channel)] += 1

    def sent_to(self, name: str, group: bool) -> None:
        """Count one send to channel (or, if ``group``, group) ``name``."""
        if group:
            self.group_sends += 1
        else:
            self.sent[self.label(name)] += 1

    def channel_full(self, channel: str) -> None:
        """Count one send to ``channel`` refused because it stayed full."""
        self.full[self.label(channel)] += 1

    def consumer_done(self, name: str, seconds: float) -> None:
        """Record that consumer ``name`` ran for ``seconds`` (with its sends)."""
        histogram = self.durations.get(name)
        if histogram is None:
            histogram = self.durations[name] = Histogram(CONSUMER_BUCKETS)
        histogram.observe(seconds)

    def layer_call(self, operation: str, seconds: float) -> None:
        """Record one layer call's round trip."""
        histogram = self.layer_calls.get(operation)
        if histogram is None:
            histogram = self.layer_calls[operation] = Histogram(LAYER_BUCKETS)
        histogram.observe(seconds)

    def rejoined(self, recovered: dict[str, object]) -> None:
        """Count the outcome of each group a reconnecting socket presented."""
        for outcome in recovered.values():
            self.recoveries["recovered" if outcome is True else "not_recovered"] += 1

    def layer_answered(self, up: bool) -> None:
        """Record a probe's result, counting an outage or a return when it changes."""
        if up == self.layer_up:
            return
        self.layer_up = up
        if up:
            self.layer_reconnects += 1
        else:
            self.layer_outages += 1


#: A clock for timings: ``time.perf_counter``.
clock: Callable[[], float] = time.perf_counter


class MetricsCollector(Collector):
    """Exposes a :class:`Metrics` (and its layer's own counts) at scrape time."""

    def __init__(self, metrics: Metrics, layer: BaseChannelLayer | None = None) -> None:
        self.metrics = metrics
        self.layer = layer
        #: Messages in flight, read at scrape time (set by a process with workers).
        self.in_flight: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        """The metric families, read from the counts now."""
        yield from self._interface()
        yield from self._messages()
        yield from self._consumers()
        yield from self._layer()

    def _interface(self) -> Iterator[Metric]:
        m = self.metrics
        yield _gauge("websocket_connections_open", "WebSocket connections open now.", m.connections)
        handshakes = _labelled(
            "websocket_connections", "WebSocket handshakes by outcome.", "outcome"
        )
        for outcome in OUTCOMES:
            handshakes.add_metric([outcome], m.handshakes[outcome])
        yield handshakes
        closes = _labelled("websocket_closes", "Opened WebSockets closed, by close code.", "code")
        for code, count in sorted(m.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        yield _counter("websocket_frames_received", "Frames read from clients.", m.frames_received)
        yield _counter("websocket_frames_sent", "Frames written to clients.", m.frames_sent)
        yield _counter("http_requests", "HTTP requests relayed to consumers.", m.http_requests)
        recoveries = _labelled(
            "recoveries", "Groups presented by reconnecting sockets, by outcome.", "outcome"
        )
        for outcome in RECOVERY_OUTCOMES:
            recoveries.add_metric([outcome], m.recoveries[outcome])
        yield recoveries
        yield _counter(
            "recovery_replayed_messages", "Missed messages replayed.", m.replayed_messages
        )

    def _messages(self) -> Iterator[Metric]:
        m = self.metrics
        yield _by_label("messages_sent", "Messages sent, by channel.", "channel", m.sent)
        yield _counter("group_sends", "Group sends.", m.group_sends)
        yield _by_label("messages_received", "Messages taken by workers.", "channel", m.received)
        if self.in_flight is not None:
            yield _gauge(
                "worker_messages_in_flight", "Messages taken and not finished.", self.in_flight()
            )

    def _consumers(self) -> Iterator[Metric]:
        m = self.metrics
        durations = HistogramMetricFamily(
            "chanlite_consumer_duration_seconds",
            "Consumer run time, sends flushed.",
            labels=["consumer"],
        )
        for name, histogram in sorted(m.durations.items()):
            durations.add_metric([name], histogram.buckets(), histogram.total)
        yield durations
        yield _by_label("consumer_failures", "Consumers that raised.", "consumer", m.failures)
        yield _by_label(
            "consumer_timeouts", "Consumers given up on at their timeout.", "consumer", m.timeouts
        )

    def _layer(self) -> Iterator[Metric]:
        m = self.metrics
        yield _by_label("channel_full", "Sends refused by a full channel.", "channel", m.full)
        skipped = self.layer.group_full_skips if self.layer is not None else 0
        yield _counter(
            "group_deliveries_skipped", "Group deliveries skipped: member full.", skipped
        )
        expired = self.layer.expired_messages if self.layer is not None else 0
        yield _counter("messages_expired", "Messages found expired unread.", expired)
        joins = self.layer.presence_joins if self.layer is not None else 0
        yield _counter("presence_joins", "Presence joins this process announced.", joins)
        leaves = self.layer.presence_leaves if self.layer is not None else 0
        yield _counter("presence_leaves", "Presence leaves this process announced.", leaves)
        calls = HistogramMetricFamily(
            "chanlite_layer_operation_seconds", "Layer call round trips.", labels=["operation"]
        )
        for operation, histogram in sorted(m.layer_calls.items()):
            calls.add_metric([operation], histogram.buckets(), histogram.total)
        yield calls
        yield _gauge("layer_up", "1 while the layer answers, 0 during an outage.", m.layer_up)
        yield _counter("layer_outages", "Times the layer stopped answering.", m.layer_outages)
        yield _counter("layer_reconnects", "Times it answered again.", m.layer_reconnects)


def new_registry(collector: MetricsCollector) -> CollectorRegistry:
    """A registry of ``collector`` and prometheus_client's process, platform and GC
    collectors (one per app: two apps in a process keep their own)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    for shared in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(shared)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return generate_latest(registry)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"chanlite_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"chanlite_{name}", documentation, value=value)


def _labelled(name: str, documentation: str, label: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"chanlite_{name}", documentation, labels=[label])


def _by_label(
    name: str, documentation: str, label: str, counts: dict[str, int]
) -> CounterMetricFamily:
    family = _labelled(name, documentation, label)
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
