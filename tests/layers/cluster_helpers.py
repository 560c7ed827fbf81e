"""A Redis Cluster of our own for the ``redis+cluster://`` tests: ``masters`` masters
with ``replicas`` replicas each, joined by ``redis-cli --cluster create``, on free
ports, each process stopped by its PID afterwards.

Nodes believe a silent peer down after :data:`NODE_TIMEOUT_MS` (and a majority of
masters must agree); a replica of a dead master then waits 0.5 to 1 s more, wins the
election and takes its slots over: about 2.5 s in all. The replica validity factor
is 0, so a replica always may take over, however long it was cut off. Every wait
here polls what the nodes report (``CLUSTER INFO``, ``CLUSTER NODES``, ``INFO replication``), with a
deadline; a killed node is never asked.

Given ``tls`` (a CA and a server certificate from :func:`~.tls_helpers.make_certificates`),
every node listens only for TLS (``--port 0 --tls-port``), talks TLS to its peers on
the cluster bus and to its master (``--tls-cluster``, ``--tls-replication``), and
takes clients without a certificate; the helpers here then talk TLS to it too, and
:meth:`ClusterDeployment.url` is a ``rediss+cluster://`` URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.crc

from .redis_helpers import RedisServer, free_port
from .sentinel_helpers import client, wait_for
from .tls_helpers import Certificates, TLSOnlyRedisServer

#: How many hash slots a cluster has.
SLOTS = 16384
#: How long a node must be silent before its peers believe it down (ms).
NODE_TIMEOUT_MS = 1000
# How long ``redis-cli --cluster create`` may take (it waits for the join itself).
CREATE_PATIENCE = 60.0
#: How long a cluster may take to settle (joined, agreed, replicas synced).
SETTLE_PATIENCE = 30.0
#: How long a failover may take, from the master's death to an agreed slot map.
FAILOVER_PATIENCE = 30.0
# Flags of a node that its peers do not fully know, or believe down.
UNSETTLED = frozenset({"handshake", "noaddr", "fail?", "fail"})
# MIGRATE's timeout (ms): the longest one batch may block the source.
MIGRATE_TIMEOUT_MS = 5000


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports nobody listens on right now."""
    ports: dict[int, None] = {}
    while len(ports) < count:
        ports[free_port()] = None
    return list(ports)


def key_slot(key: str) -> int:
    """The hash slot of ``key``, honouring a ``{hash tag}``."""
    return redis.crc.key_slot(key.encode())


@dataclass(frozen=True)
class NodeView:
    """One line of a node's ``CLUSTER NODES``: how that node sees a (maybe other) node."""

    id: str
    port: int
    flags: frozenset[str]
    #: The id of the master it replicates, or None for a master.
    master_id: str | None
    #: The slot ranges it serves, inclusive (migration marks left out).
    slots: tuple[tuple[int, int], ...]


def parse_nodes(text: str) -> list[NodeView]:
    """Parse ``CLUSTER NODES`` output, a node a line."""
    return [parse_node(line.split()) for line in text.splitlines() if line.strip()]


def parse_node(fields: list[str]) -> NodeView:
    """Parse one line's fields: id, ip:port@bus, flags, master, ping, pong, epoch,
    link, slots."""
    node_id, address, flags, master = fields[:4]
    port = int(address.split("@")[0].rsplit(":", 1)[1] or 0)  # ":0" while unknown
    master_id = None if master == "-" else master
    return NodeView(node_id, port, frozenset(flags.split(",")), master_id, parse_slots(fields[8:]))


def parse_slots(items: list[str]) -> tuple[tuple[int, int], ...]:
    """The ``(first, last)`` ranges of a ``CLUSTER NODES`` line's slot fields."""
    ranges = []
    for item in items:
        if item.startswith("["):  # [slot->-id] or [slot-<-id]: a migration under way
            continue
        first, _, last = item.partition("-")
        ranges.append((int(first), int(last or first)))
    return tuple(ranges)


#: ``(first, last, port)`` slot ranges, sorted: who serves what.
SlotMap = tuple[tuple[int, int, int], ...]


def slot_map(views: list[NodeView]) -> SlotMap:
    """The slot map of one node's view of the cluster."""
    return tuple(sorted((first, last, v.port) for v in views for first, last in v.slots))


def serves(slots: SlotMap, slot: int) -> int | None:
    """The port of the node serving ``slot`` in a slot map, or None if none does."""
    return next((port for first, last, port in slots if first <= slot <= last), None)


class ClusterDeployment:
    """``masters`` masters (at least 3, as ``redis-cli`` requires) with ``replicas``
    replicas each, their files in ``directory``; with ``tls``, speaking only TLS with
    those certificates (see the module)."""

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        tls: Certificates | None = None,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.directory = directory
        self.masters = masters
        self.replicas = replicas
        #: The certificates of a TLS-only cluster, or None for a plain one.
        self.tls = tls
        count = masters * (1 + replicas)
        # Each node's bus port is named too: port + 10000 may be taken, or above 65535.
        ports = free_ports(2 * count)
        self.servers = {
            port: self._server(port, self._options(port, bus))
            for port, bus in zip(ports[:count], ports[count:], strict=True)
        }
        #: When :meth:`wait_for_promotion` first saw the replica turn master
        #: (``time.monotonic()``), or None before.
        self.promoted_at: float | None = None
        # How each node killed by kill() saw the cluster just before.
        self._killed: dict[int, list[NodeView]] = {}

    def _server(self, port: int, options: list[str]) -> RedisServer:
        if self.tls is None:
            return RedisServer(port, *options)
        tls_links = ["--tls-cluster", "yes", "--tls-replication", "yes"]
        return TLSOnlyRedisServer(self.tls, port, *options, *tls_links)

    def _options(self, port: int, bus_port: int) -> list[str]:
        # A replica saves the snapshot it syncs from before loading it: one file each.
        return [
            *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
            *("--cluster-config-file", str(self.directory / f"nodes-{port}.conf")),
            *("--dbfilename", f"dump-{port}.rdb"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--cluster-replica-validity-factor", "0", "--dir", str(self.directory)),
            *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        ]

    @property
    def ports(self) -> list[int]:
        """Every node's port, killed or not, in creation order."""
        return list(self.servers)

    def live_ports(self) -> list[int]:
        """The ports of the nodes that run (neither killed nor stopped)."""
        return [port for port, server in self.servers.items() if server.process is not None]

    def start(self) -> None:
        """Start every node, join them into a cluster, and return once every node
        says ``cluster_state:ok``, all nodes agree on a slot map that covers every
        slot, and every replica's link to its master is up. On failure, stops all."""
        try:
            for port in self.servers:
                (self.directory / f"nodes-{port}.conf").unlink(missing_ok=True)
                self.servers[port].start()
            self._create()
            wait_for(self._settled, "the cluster to settle", SETTLE_PATIENCE)
        except BaseException:
            self.stop()
            raise

    def _create(self) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed")
        command = [binary]
        if self.tls is not None:
            command += ["--tls", "--cacert", str(self.tls.ca)]
        command += ["--cluster", "create", *(f"127.0.0.1:{p}" for p in self.servers)]
        command += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        plain = {**os.environ, "TERM": "dumb"}  # an xterm gets its errors in colour
        done = subprocess.run(
            command, capture_output=True, text=True, env=plain, timeout=CREATE_PATIENCE
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def stop(self) -> None:
        """SIGKILL every node by its PID (again is harmless)."""
        for server in self.servers.values():
            server.kill()

    def url(self, scheme: str | None = None, count: int = 2) -> str:
        """A URL naming the first ``count`` of :meth:`master_ports` as seed nodes;
        ``scheme`` is ``redis+cluster``, or ``rediss+cluster`` for a TLS cluster,
        unless given (a TLS cluster's URL names no CA: give ``ssl_ca_certs``)."""
        if scheme is None:
            scheme = "redis+cluster" if self.tls is None else "rediss+cluster"
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.master_ports()[:count])
        return f"{scheme}://{hosts}"

    def client(self, port: int) -> redis.Redis:
        """A redis-py client of the node at ``port`` (use it in ``with``), over TLS
        trusting the cluster's CA for a TLS cluster."""
        if self.tls is None:
            return client(port)
        return redis.Redis(
            "127.0.0.1",
            port,
            socket_timeout=1,
            socket_connect_timeout=1,
            decode_responses=True,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca),
        )

    def views(self, port: int) -> list[NodeView]:
        """The cluster as the node at ``port`` sees it (``CLUSTER NODES``)."""
        with self.client(port) as node:
            return parse_nodes(str(node.execute_command("CLUSTER", "NODES")))

    def state_ok(self, port: int) -> bool:
        """Whether the node's ``CLUSTER INFO`` says ``cluster_state:ok``."""
        with self.client(port) as node:
            return "cluster_state:ok" in str(node.execute_command("CLUSTER", "INFO")).split()

    def node_id(self, port: int) -> str:
        """The node's id in the cluster."""
        with self.client(port) as node:
            return str(node.execute_command("CLUSTER", "MYID"))

    def master_ports(self) -> list[int]:
        """The ports of the live nodes that say (``ROLE``) they are masters, sorted."""
        return self._masters_among(set(self.live_ports()))

    def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot``, as the first live node that
        runs sees it now (every node agrees once a ``wait_*`` or ``start`` is done)."""
        owner = serves(slot_map(self.views(self.live_ports()[0])), slot)
        if owner is None:
            raise LookupError(f"no node serves slot {slot}")
        return owner

    def _agreed_map(self) -> SlotMap | None:
        """The slot map if every live node says ``cluster_state:ok`` and they all
        report the same map covering every slot; else None."""
        if not all(self.state_ok(port) for port in self.live_ports()):
            return None
        maps = {slot_map(self.views(port)) for port in self.live_ports()}
        agreed = maps.pop()
        covered = sum(last - first + 1 for first, last, _ in agreed) == SLOTS
        return agreed if covered and not maps else None

    def _settled(self) -> bool:
        if self._agreed_map() is None:
            return False
        for port in self.live_ports():
            views = self.views(port)
            if len(views) != len(self.servers) or any(v.flags & UNSETTLED for v in views):
                return False
            with self.client(port) as node:
                replication: dict[str, Any] = node.info("replication")
            if replication.get("master_link_status", "up") != "up":  # only replicas have one
                return False
        return True

    def kill(self, port: int) -> None:
        """SIGKILL the node at ``port`` (it must still answer: first it is asked for
        its replicas and slots, for :meth:`wait_for_promotion`)."""
        try:
            self._killed[port] = self.views(port)
        finally:
            self.servers[port].kill()

    def wait_for_promotion(self, dead_port: int, within: float = FAILOVER_PATIENCE) -> int:
        """Wait until a replica of the master killed at ``dead_port`` (by :meth:`kill`)
        has been promoted, every live node says ``cluster_state:ok``, and they agree
        on a full slot map in which ``dead_port`` serves nothing and the new master
        serves what the dead one did. Return the new master's port, and set
        :attr:`promoted_at` to the ``time.monotonic()`` at which its ``ROLE`` was
        first seen to be master (polled every :data:`~.sentinel_helpers.POLL` s)."""
        views = self._killed.get(dead_port, [])
        dead = next((v for v in views if "myself" in v.flags and v.slots), None)
        replicas = {v.port for v in views if dead is not None and v.master_id == dead.id}
        if dead is None or not replicas:
            raise ValueError(f"127.0.0.1:{dead_port} was no master with slots and replicas")
        self.promoted_at = None
        promoted: list[int] = []

        def taken_over() -> bool:
            if not promoted:
                promoted.extend(self._masters_among(replicas))
                if not promoted:
                    return False
                self.promoted_at = time.monotonic()
            agreed = self._agreed_map()
            if agreed is None or any(port == dead_port for *_, port in agreed):
                return False
            ends = [slot for first, last in dead.slots for slot in (first, last)]
            return all(serves(agreed, slot) == promoted[0] for slot in ends)

        wait_for(taken_over, f"a replica of 127.0.0.1:{dead_port} to take over", within)
        return promoted[0]

    def _masters_among(self, ports: set[int]) -> list[int]:
        """Those of ``ports`` whose live nodes say (``ROLE``) they are masters."""
        masters = []
        for port in sorted(ports & set(self.live_ports())):
            with self.client(port) as node:
                if node.role()[0] == "master":
                    masters.append(port)
        return masters

    def migrate_slot(
        self,
        slot: int,
        to_port: int,
        *,
        batch: int = 10,
        between_batches: Callable[[], None] | None = None,
    ) -> None:
        """Move ``slot`` with its keys to the master at ``to_port`` as ``redis-cli
        --cluster reshard`` does: mark it importing/migrating, ``MIGRATE`` its keys
        ``batch`` at a time (calling ``between_batches()`` after each batch, so a
        test can interleave traffic; not called if the slot has no keys) until the
        source has none left, then assign it to the target on every master. Return
        once every live node says the target owns it."""
        from_port = self.owner_of(slot)
        if from_port == to_port:
            raise ValueError(f"127.0.0.1:{to_port} already serves slot {slot}")
        if to_port not in self.master_ports():
            raise ValueError(f"127.0.0.1:{to_port} is no master")
        source_id, target_id = self.node_id(from_port), self.node_id(to_port)
        with self.client(to_port) as target:
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        with self.client(from_port) as source:
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                source.execute_command(
                    "MIGRATE", "127.0.0.1", to_port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys
                )
                if between_batches is not None:
                    between_batches()
        # The target first: it must not send clients back to the source meanwhile.
        others = [p for p in self.master_ports() if p not in (to_port, from_port)]
        for port in (to_port, from_port, *others):
            with self.client(port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        def moved() -> bool:
            ports = self.live_ports()
            return all(serves(slot_map(self.views(p)), slot) == to_port for p in ports)

        wait_for(moved, f"every node to see slot {slot} on 127.0.0.1:{to_port}", SETTLE_PATIENCE)


@contextlib.contextmanager
def cluster_deployment(
    directory: Path,
    *,
    masters: int = 3,
    replicas: int = 1,
    tls: Certificates | None = None,
) -> Iterator[ClusterDeployment]:
    """A started :class:`ClusterDeployment` (``masters=``, ``replicas=``, ``tls=``),
    stopped by PID afterwards."""
    deployment = ClusterDeployment(directory, masters=masters, replicas=replicas, tls=tls)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
