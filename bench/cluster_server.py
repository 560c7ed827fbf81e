"""A private Redis Cluster for the ``redis-cluster`` suite: 3 masters, no replicas.

Each node is a ``redis-server --cluster-enabled yes`` on a free port of 127.0.0.1
with its own free cluster bus port (``--cluster-port``), no persistence, its
``nodes-<port>.conf`` and ``dump-<port>.rdb`` in a temporary directory, and pinned
to one CPU as :mod:`bench.redis_server` pins its server. ``redis-cli --cluster
create`` joins them; :func:`start_cluster` returns once every node says
``cluster_state:ok`` and knows every other node. Each node is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis

from .redis_server import RedisProcess, process_cpu_seconds, stop_redis, wait_answering
from .ws_servers import free_port, pinned

#: How many masters the benchmark cluster has (``redis-cli`` needs at least 3).
MASTERS = 3
#: ``--cluster-node-timeout`` (ms): no node is ever believed down during a run.
NODE_TIMEOUT_MS = 5000
#: How long ``redis-cli --cluster create`` and the settling after it may take.
CREATE_TIMEOUT = 60.0
SETTLE_TIMEOUT = 30.0


class ClusterProcess:
    """A running private Redis Cluster: its nodes (all masters) and their directory."""

    def __init__(self, nodes: list[RedisProcess], directory: Path, cpu: int) -> None:
        self.nodes = nodes
        self.directory = directory
        self.cpu = cpu

    @property
    def pids(self) -> list[int]:
        """Every node's process id."""
        return [node.pid for node in self.nodes]

    def url(self, **options: object) -> str:
        """The ``redis+cluster://`` URL naming every node as a seed, with ``options``
        as its query string."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"redis+cluster://{hosts}" + (f"?{query}" if query else "")

    def cpu_seconds(self) -> float:
        """User plus system CPU time all nodes have used so far."""
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    async def flush(self) -> None:
        """Empty every node (untimed set-up of a round; a cluster has database 0 only)."""
        for node in self.nodes:
            await node.flush_db(0)


async def start_cluster(cpu: int, masters: int = MASTERS) -> ClusterProcess:
    """Start ``masters`` cluster nodes pinned to ``cpu``, join them, and return once
    the cluster is ok on every node."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise SystemExit("the redis-cluster suite needs redis-server and redis-cli on PATH")
    directory = Path(tempfile.mkdtemp(prefix="chanlite-bench-cluster-"))
    cluster = ClusterProcess([], directory, cpu)
    try:
        for _ in range(masters):
            cluster.nodes.append(await start_node(binary, directory, cpu))
        for node in cluster.nodes:
            await wait_answering(node)
        await create(cli, cluster)
        await wait_settled(cluster)
    except BaseException:
        await stop_cluster(cluster)
        raise
    return cluster


async def start_node(binary: str, directory: Path, cpu: int) -> RedisProcess:
    """One cluster node on a free port with a free bus port of its own."""
    port, bus = free_port(), free_port()
    while bus == port:
        bus = free_port()
    process = await asyncio.create_subprocess_exec(
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--loglevel", "warning"),
        *("--cluster-enabled", "yes", "--cluster-port", str(bus)),
        *("--cluster-config-file", str(directory / f"nodes-{port}.conf")),
        *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
        *("--save", "", "--appendonly", "no"),
        *("--dbfilename", f"dump-{port}.rdb", "--dir", str(directory)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        preexec_fn=pinned(cpu),
    )
    return RedisProcess(process, port, cpu)


async def create(cli: str, cluster: ClusterProcess) -> None:
    """``redis-cli --cluster create`` over every node, no replicas."""
    hosts = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
    process = await asyncio.create_subprocess_exec(
        cli,
        *("--cluster", "create", *hosts, "--cluster-replicas", "0", "--cluster-yes"),
        env={**os.environ, "TERM": "dumb"},  # no colours in its messages
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=pinned(cluster.cpu),
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), CREATE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"redis-cli --cluster create took over {CREATE_TIMEOUT:.0f}s") from None
    if process.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode(errors='replace')}")


async def wait_settled(cluster: ClusterProcess) -> None:
    """Poll until every node says ``cluster_state:ok`` and knows all the nodes."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    clients = [redis.Redis(port=node.port, decode_responses=True) for node in cluster.nodes]
    try:
        while not all([await settled(client, len(clients)) for client in clients]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not settle within {SETTLE_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()


async def settled(client: redis.Redis, nodes: int) -> bool:
    """Whether this node says ``cluster_state:ok`` and knows ``nodes`` nodes."""
    info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    fields = dict(line.split(":", 1) for line in str(info).split() if ":" in line)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(nodes)


async def stop_cluster(cluster: ClusterProcess) -> None:
    """Stop every node by its PID (SIGTERM, SIGKILL if it hangs); remove the directory."""
    for node in cluster.nodes:
        await stop_redis(node)
    shutil.rmtree(cluster.directory, ignore_errors=True)
