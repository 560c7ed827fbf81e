"""Suite ``redis-cluster``: chanlite's ``redis+cluster://`` layer on a 3-master Redis
Cluster, against chanlite on one Redis and against channels_redis.

One run has two phases, each with a fresh private single redis-server
(:mod:`bench.redis_server`) and a fresh private cluster (:mod:`bench.cluster_server`,
3 masters, no replicas), both pinned to the same CPU:

* **layer rows**, in-process as in ``redis-layers`` (Redis and the cluster on the CPU
  the benchmark does not run on): send+receive pairs and ``group_send`` to 100
  ``new_channel("bench!")`` members, chanlite on the cluster against chanlite on one
  Redis; and ``group_send`` to 100 members that are distinct single-reader channels
  (``new_channel("member?")``, each drained by a receive on that channel, as if each
  member lived in a process of its own), chanlite (on one Redis, and on the cluster)
  against channels_redis with one ``RedisChannelLayer`` per member on one Redis (as
  100 processes would have), and, for information, against members that share one
  ``RedisChannelLayer`` (channels_redis stores a group message for the members of
  one layer once, so one layer's members cost it a single read);
* **WebSocket rows**, with ws-redis's deployments (:mod:`bench.ws_redis`: servers,
  workers, Redis and the cluster all on the server CPU, the Node load generator on the
  other): closed-loop echo at 50 clients for ``chanlite serve`` and for
  ``--no-worker`` + 2 ``chanlite worker`` processes, each on the cluster against the
  same on one Redis; and fan-out to 1,000 for both chanlite deployments on the cluster
  against Channels 4 + ``RedisChannelLayer`` on one Redis. Every deployment is
  started fresh each round and measured in turn, the order rotating between rounds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer  # type: ignore[import-untyped]

import chanlite

from .cluster_server import MASTERS, ClusterProcess, start_cluster, stop_cluster
from .core import Config, Round, Row, Sample, Target, check, compare
from .redis_layers import (
    DB,
    GROUP,
    GROUP_SIZE,
    MESSAGE,
    chanlite_group,
    chanlite_pairs,
    channels_group,
    close_channels_layer,
)
from .redis_server import RedisProcess, process_cpu_seconds, start_redis, stop_redis
from .ws import (
    ATTEMPTS,
    BIG_CAPACITY,
    FD_HEADROOM,
    FULL,
    MAX_OTHERS,
    QUICK,
    Endpoint,
    Results,
    Sizes,
    attempt,
    echo,
    fanout,
    run_note,
    say,
)
from .ws import Round as WsRound
from .ws_load import ensure_node
from .ws_redis import DATABASES as SINGLE_DATABASES
from .ws_redis import (
    LABELS,
    WORKERS,
    Deployment,
    DeploymentSpec,
    chanlite_args,
    environment,
    start_deployment,
    stop_deployment,
)
from .ws_redis import deployment_specs as single_specs
from .ws_rows import Metric, Versus, ratio_target, row
from .ws_servers import Cpus, ServerSpec, raise_fd_limit

NAME = "redis-cluster"
TITLE = (
    f"Redis Cluster: chanlite redis+cluster:// ({MASTERS} masters) vs chanlite on one "
    "Redis and vs channels_redis"
)
BASELINE = "baseline"

#: Targets, on medians: the cluster against one Redis, and chanlite's distinct-member
#: group_send against channels_redis's members in layers of their own (members that
#: live in different processes, as the row's premise says).
CLUSTER_TARGET = Target(0.75, on_ratio=True)
MEMBERS_TARGET = Target(1.0, on_ratio=True)

#: The prefix of ``new_channel`` names of the distinct single-reader members.
MEMBER = "member?"

#: The WebSocket deployments: ws-redis's on one Redis, and chanlite's on the cluster
#: (each under a prefix of its own, as the cluster has only database 0).
SINGLE = ("chanlite-redis", "chanlite-split", "channels-redis")
CLUSTER_PREFIXES = {
    "chanlite-cluster": "chanlite-serve",
    "chanlite-cluster-split": "chanlite-split",
}
DEPLOYMENT_LABELS = {
    **LABELS,
    "chanlite-cluster": LABELS["chanlite-redis"],
    "chanlite-cluster-split": LABELS["chanlite-split"],
    "channels-redis": "Channels 4 + RedisChannelLayer on one Redis",
}
#: Echo: each chanlite deployment on the cluster against the same on one Redis.
ECHO_PAIRS = (
    Versus("chanlite-cluster", "chanlite-redis", "one Redis"),
    Versus("chanlite-cluster-split", "chanlite-split", "one Redis"),
)
#: Fan-out: each chanlite deployment on the cluster against Channels 4.
FANOUT_PAIRS = (
    Versus("chanlite-cluster", "channels-redis", "Channels 4"),
    Versus("chanlite-cluster-split", "channels-redis", "Channels 4"),
)
ECHO_CLIENTS = 50
ROOM = 1_000
#: WebSocket targets, as minimum ratios: echo on the cluster against one Redis, and
#: fan-out on the cluster against Channels 4.
TARGETS = {f"echo-{ECHO_CLIENTS}": 0.75, f"fanout-{ROOM}": 4.0}
SIZES = replace(FULL, echo_clients=(ECHO_CLIENTS,), rooms=(ROOM,))
QUICK_SIZES = replace(QUICK, echo_clients=(ECHO_CLIENTS,), rooms=(ROOM,))

ON_CLUSTER = f"redis+cluster:// ({MASTERS} masters)"
ON_SINGLE = "redis:// (one server)"

DESCRIPTION = (
    f"chanlite's `redis+cluster://` layer on a private Redis Cluster of {MASTERS} masters "
    "and no replicas (`bench/cluster_server.py`: `redis-server --cluster-enabled yes`, "
    "no persistence, joined by `redis-cli --cluster create`; the layer places names in "
    "16 hash-tagged buckets, and a `group_send` runs one script on each bucket that "
    "holds members, spread over the masters), against chanlite's `redis://` layer and "
    "channels_redis's "
    "`RedisChannelLayer` on one private redis-server (no persistence). The cluster's "
    "nodes are always pinned to the same one CPU as the single server, so the cluster "
    "gains no extra core. Ratio = the first-named median / the second-named (baseline) "
    "median; targets are judged on medians. "
    "*Layer rows* (in-process, as in redis-layers; the servers on the CPU the benchmark "
    "does not run on, each emptied before each round, rounds interleaved): message "
    '`{"type": "websocket.send", "text": "hello world", "reply_channel": '
    '"bench!reply"}`. *Pairs*: send to a channel and receive it back, in a tight loop. '
    "*group_send to 100 `bench!` members*: one `group_send` to 100 "
    "`new_channel('bench!')` members, then all 100 deliveries received through the one "
    "`bench!` reader (as an interface server reads its sockets; they share the queue "
    "`bench!`, so on the cluster all 100 sit in one bucket). *group_send to 100 "
    "distinct members*: the members are distinct single-reader channels, as if each "
    "lived in a process of its own: chanlite's are `new_channel('member?')` names "
    "(each a queue of its own, read by a blocking read of its own), channels_redis's "
    "`new_channel()` names of one `RedisChannelLayer`; the time counts the `group_send` "
    "and then one `receive` on each member's own channel in turn, for both libraries "
    "alike (deliveries/s = 100 x sends / that time). Note that channels_redis stores a "
    "`group_send` to members that share its layer as one message naming them all (its "
    "`__asgi_channel__` list) on that layer's one queue, and its receive hands it to "
    "all 100 members, so its 100 deliveries cost one Redis read: members that all live "
    "in one process, which is not the premise of the row. The target is judged "
    "against members that each have a `RedisChannelLayer` of their own (100 layers in "
    "the process, as 100 processes would have), where each delivery is a read of its "
    "own as on chanlite; the shared-layer row is shown for information. channels_redis "
    "at its defaults otherwise (msgpack, capacity 100). "
    "*WebSocket rows* (the deployments of ws-redis, `bench/apps/chanlite_echo.py` and "
    "`bench/apps/channels_echo.py` under uvicorn; servers, workers, Redis and the "
    "cluster all on the benchmark's CPU, the Node load generator on the other): each "
    "round starts fresh `chanlite serve` (in-process workers) and `chanlite serve "
    f"--no-worker` + {WORKERS} `chanlite worker` processes, once on the cluster (each "
    "under a prefix of its own) and once on one Redis (a database each), and Channels 4 "
    "with `RedisChannelLayer` on one Redis; chanlite's layers at capacity "
    f"{BIG_CAPACITY:,}. *Echo*: {ECHO_CLIENTS} closed-loop clients each send 32 bytes "
    "and wait for the echo; echoes per second over 5 s after a 1 s warm-up. *Fan-out*: "
    f"a room of {ROOM:,} sockets, the first of which sends every broadcast and all of "
    "which receive it; deliveries per second at flood (10 broadcasts in flight, 5 s "
    "after a 1 s warm-up, after 5 s at 20 broadcasts/s), lost deliveries summed over "
    "the rounds; a row that counts losses or closed sockets meets its target only if "
    "chanlite had none. A deployment's CPU counts all its processes and its Redis (all "
    f"{MASTERS} nodes for the cluster), and a measurement is repeated (up to "
    f"{ATTEMPTS} times) only when processes outside it took more than {MAX_OTHERS:.0%} "
    "of either CPU."
)


async def run(config: Config) -> list[Row]:
    """The layer rows, then the WebSocket rows."""
    cpus = Cpus.pick()
    async with servers(cpus.load) as (single, cluster):
        rows = await layer_rows(config, single, cluster)
    return rows + await websocket_rows(config, cpus)


@asynccontextmanager
async def servers(cpu: int) -> AsyncIterator[tuple[RedisProcess, ClusterProcess]]:
    """A fresh single redis-server and a fresh cluster, both pinned to ``cpu``."""
    single = await start_redis(cpu)
    try:
        cluster = await start_cluster(cpu)
        try:
            pids = f"one Redis (pid {single.pid}) and a cluster (pids {cluster.pids})"
            say(f"{NAME}: {pids}, CPU {cpu}")
            yield single, cluster
        finally:
            await stop_cluster(cluster)
    finally:
        await stop_redis(single)


# -- layer rows ---------------------------------------------------------------------


def emptied(empty: Callable[[], Awaitable[None]], round_fn: Round) -> Round:
    """``round_fn`` run after ``empty()`` (untimed)."""

    async def flushed() -> Sample:
        await empty()
        return await round_fn()

    return flushed


async def layer_rows(config: Config, single: RedisProcess, cluster: ClusterProcess) -> list[Row]:
    """Cluster against one Redis, then distinct-member group_send against channels_redis."""
    pairs = config.size(full=3_000, quick=300)
    sends = config.size(full=50, quick=5)
    urls = {"cluster": cluster.url(), "single": single.url(DB)}
    empties: dict[str, Callable[[], Awaitable[None]]] = {
        "cluster": cluster.flush,
        "single": partial(single.flush_db, DB),
    }

    def on(where: str, measure: Callable[[str, int], Awaitable[Sample]], count: int) -> Round:
        return emptied(empties[where], partial(measure, urls[where], count))

    core = partial(ChannelsRedisLayer, hosts=[urls["single"]], capacity=GROUP_SIZE)
    channels = emptied(empties["single"], partial(channels_group, core, sends))
    apart_layers = [core() for _ in range(GROUP_SIZE)]
    apart = emptied(empties["single"], partial(channels_members_apart, apart_layers, sends))
    apart_label = (
        f"channels_redis, one RedisChannelLayer per member on one Redis (as {GROUP_SIZE} processes)"
    )
    versus = f"chanlite {ON_CLUSTER} vs chanlite {ON_SINGLE}"
    theirs = "channels_redis RedisChannelLayer on one Redis (new_channel() members)"
    plan = [
        ("send+receive pairs", "pairs/s", on("cluster", chanlite_pairs, pairs),
         on("single", chanlite_pairs, pairs), versus, CLUSTER_TARGET),
        (f"group_send to {GROUP_SIZE} bench! members", "deliveries/s",
         on("cluster", chanlite_group, sends), on("single", chanlite_group, sends), versus,
         CLUSTER_TARGET),
        (f"group_send to {GROUP_SIZE} distinct member? channels", "deliveries/s",
         on("single", chanlite_members, sends), apart, f"chanlite {ON_SINGLE} vs {apart_label}",
         MEMBERS_TARGET),
        (f"group_send to {GROUP_SIZE} distinct member? channels", "deliveries/s",
         on("cluster", chanlite_members, sends), apart,
         f"chanlite {ON_CLUSTER} vs {apart_label}", None),
        (f"group_send to {GROUP_SIZE} distinct member? channels", "deliveries/s",
         on("single", chanlite_members, sends), channels,
         f"chanlite {ON_SINGLE} vs {theirs}, which share one layer (not like for like)", None),
    ]  # fmt: skip
    rows = []
    try:
        for what, unit, ours, baseline, label, target in plan:
            say(f"{NAME}: {what}, {label}")
            ours_stats, baseline_stats = await compare(ours, baseline, config)
            rows.append(Row(f"{what}, {label}", unit, ours_stats, baseline_stats, target))
    finally:
        for layer in apart_layers:
            await close_channels_layer(layer)
    return rows


async def chanlite_members(url: str, sends: int) -> Sample:
    """``group_send`` to 100 ``member?`` channels and receive each on its own channel,
    ``sends`` times."""
    layer = chanlite.get_layer(url, capacity=GROUP_SIZE)
    try:
        members = [await layer.new_channel(MEMBER) for _ in range(GROUP_SIZE)]
        check(len(set(members)) == GROUP_SIZE, "chanlite made a duplicate channel name")
        for member in members:
            await layer.group_add(GROUP, member)
        send = partial(layer.group_send, GROUP, MESSAGE)
        receives = [partial(layer.receive, [member]) for member in members]
        await group_sends(send, receives, 1)  # untimed: every member gets one
        sample, last = await group_sends(send, receives, sends)
        check(last == (members[-1], MESSAGE), f"chanlite returned {last!r}")
        check(layer.group_full_skips == 0, "chanlite skipped a full member")
        leftover = await layer.receive(members, timeout=0)
        check(leftover == (None, None), f"chanlite kept a message: {leftover!r}")
    finally:
        await layer.aclose()
    return sample


async def channels_members_apart(layers: Sequence[Any], sends: int) -> Sample:
    """``group_send`` to 100 members, each the ``new_channel()`` of a channels_redis
    layer of its own (as if in 100 processes), each received on its layer, ``sends``
    times. The layers are made once for every round: channels_redis wraps the event
    loop's ``close`` once per layer it makes, each wrapper calling the last, so
    hundreds made in one loop overflow the stack when it closes."""
    members = [await layer.new_channel() for layer in layers]
    for member in members:
        await layers[0].group_add(GROUP, member)
    send = partial(layers[0].group_send, GROUP, MESSAGE)
    pairs = zip(layers, members, strict=True)
    receives = [partial(layer.receive, member) for layer, member in pairs]
    await group_sends(send, receives, 1)  # untimed: connects every layer
    sample, last = await group_sends(send, receives, sends)
    check(last == MESSAGE, f"channels_redis returned {last!r}")
    buffered = sum(q.qsize() for layer in layers for q in layer.receive_buffer.values())
    check(buffered == 0, "channels_redis kept a message")
    return sample


async def group_sends(
    send: Callable[[], Awaitable[None]],
    receives: Sequence[Callable[[], Awaitable[Any]]],
    sends: int,
) -> tuple[Sample, Any]:
    """``sends`` times: one ``group_send``, then each member's receive in turn; the
    sample of deliveries, and the last message received."""
    last = None
    start = time.perf_counter()
    for _ in range(sends):
        await send()
        for receive in receives:
            last = await receive()
    return Sample.since(start, sends * len(receives)), last


# -- WebSocket rows -------------------------------------------------------------------


class ClusterDeployment(Deployment):
    """A deployment on the cluster: its CPU time counts every node of the cluster."""

    def __init__(self, deployment: Deployment, cluster: ClusterProcess) -> None:
        super().__init__(deployment, deployment.workers, cluster.nodes[0])
        self.others = cluster.nodes[1:]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server, its workers and every node."""
        return super().cpu_seconds() + sum(process_cpu_seconds(n.pid) for n in self.others)


def deployment_specs(single: RedisProcess, cluster: ClusterProcess) -> dict[str, DeploymentSpec]:
    """ws-redis's deployments on one Redis (without the pub/sub one), and chanlite's
    two on the cluster."""
    specs = {name: spec for name, spec in single_specs(single).items() if name in SINGLE}
    for name, prefix in CLUSTER_PREFIXES.items():
        layer = cluster.url(capacity=BIG_CAPACITY, prefix=prefix)
        label = f"{DEPLOYMENT_LABELS[name]} on the cluster"
        if name.endswith("-split"):
            args = chanlite_args(layer, "--no-worker")
            specs[name] = DeploymentSpec(ServerSpec(name, label, args), layer, WORKERS)
        else:
            specs[name] = DeploymentSpec(ServerSpec(name, label, chanlite_args(layer)))
    return specs


async def websocket_rows(config: Config, cpus: Cpus) -> list[Row]:
    """Echo and fan-out rounds with one Redis and the cluster on the server CPU."""
    sizes = QUICK_SIZES if config.quick else SIZES
    ensure_node()
    raise_fd_limit(max(sizes.rooms) * 2 + FD_HEADROOM)
    async with servers(cpus.server) as (single, cluster):
        with environment(single):
            results = await measure(config, sizes, cpus, single, cluster)
    return [echo_row(results, pair) for pair in ECHO_PAIRS] + [
        fanout_row(results, pair) for pair in FANOUT_PAIRS
    ]


async def measure(
    config: Config, sizes: Sizes, cpus: Cpus, single: RedisProcess, cluster: ClusterProcess
) -> Results:
    """Run ``config.rounds`` rounds; each measurement warms up on its own."""
    log_dir = Path(mkdtemp(prefix="chanlite-redis-cluster-bench-"))
    results = Results(sizes, config.rounds)
    say(f"{NAME}: servers, Redis and the cluster on CPU {cpus.server}, load on CPU {cpus.load}")
    say(f"{NAME}: logs in {log_dir}")
    started = time.monotonic()
    for index in range(config.rounds):
        say(f"{NAME}: round {index + 1}/{config.rounds}")
        current = WsRound(index, sizes, cpus, results, {})
        await run_round(current, log_dir, single, cluster)
    say(f"{NAME}: {config.rounds} round(s) took {time.monotonic() - started:.0f}s")
    note = run_note(results)
    if note:
        say(f"{NAME}: failures and server warnings:\n{note}")
    return results


async def run_round(
    current: WsRound, log_dir: Path, single: RedisProcess, cluster: ClusterProcess
) -> None:
    """Start fresh deployments on emptied databases and an emptied cluster, run echo
    then fan-out on each in turn, stop them."""
    cpu = current.cpus.server
    try:
        await cluster.flush()
        for name, spec in deployment_specs(single, cluster).items():
            if name in CLUSTER_PREFIXES:
                deployment = await start_deployment(
                    spec, cpu=cpu, log_dir=log_dir, redis=cluster.nodes[0]
                )
                current.servers[name] = ClusterDeployment(deployment, cluster)
            else:
                await single.flush_db(SINGLE_DATABASES[name])
                current.servers[name] = await start_deployment(
                    spec, cpu=cpu, log_dir=log_dir, redis=single
                )
        echoes = {pair.ours for pair in ECHO_PAIRS} | {pair.theirs for pair in ECHO_PAIRS}
        for name in current.rotated(sorted(echoes)):
            measure_one = partial(echo, current, Endpoint(name, name, "/echo/"), ECHO_CLIENTS)
            await attempt(current, f"echo-{ECHO_CLIENTS}", name, measure_one)
        fanouts = {pair.ours for pair in FANOUT_PAIRS} | {pair.theirs for pair in FANOUT_PAIRS}
        for name in current.rotated(sorted(fanouts)):
            await attempt(current, f"fanout-{ROOM}", name, partial(fanout, current, name, ROOM))
    finally:
        for name, server in current.servers.items():
            await stop_deployment(server)
            current.results.log_problems[name].extend(server.log_problems())


def echo_row(results: Results, pair: Versus) -> Row:
    """Echoes per second, the cluster against one Redis; closed sockets are failures."""
    scenario = f"echo-{ECHO_CLIENTS}"
    closed = pair.count_note(results, scenario, "closed").replace("chanlite", "cluster", 1)
    label = (
        f"echo, {ECHO_CLIENTS} clients, {DEPLOYMENT_LABELS[pair.ours]}: {ON_CLUSTER} vs "
        f"{ON_SINGLE} (closed by the server: {closed})"
    )
    return counted_row(results, pair, label, "msg/s", Metric(scenario, "rate"), "closed")


def fanout_row(results: Results, pair: Versus) -> Row:
    """Deliveries per second at flood, against Channels 4; lost deliveries are failures."""
    scenario = f"fanout-{ROOM}"
    lost = pair.count_note(results, scenario, "flood_lost")
    label = (
        f"fan-out to {ROOM:,}, flood, {DEPLOYMENT_LABELS[pair.ours]} on {ON_CLUSTER} vs "
        f"{DEPLOYMENT_LABELS[pair.theirs]} (lost: {lost})"
    )
    metric = Metric(scenario, "flood_rate")
    return counted_row(results, pair, label, "deliveries/s", metric, "flood_lost")


def counted_row(
    results: Results, pair: Versus, label: str, unit: str, metric: Metric, counted: str
) -> Row:
    """A row of ``metric`` whose target (:data:`TARGETS`, by scenario) also needs
    chanlite's ``counted`` (losses, closed sockets) to be zero."""
    target = ratio_target(TARGETS[metric.scenario])
    failures = results.total(metric.scenario, pair.ours, counted)
    return row(results, label, unit, metric, pair, target=target, failures=failures)
