"""A Redis Sentinel deployment of our own for the ``redis+sentinel://`` tests: a
master, one replica and three sentinels (quorum 2), on free ports, each process
stopped by its PID afterwards.

The sentinels notice a dead master within :data:`DOWN_AFTER_MS` and promote the
replica; every wait here polls what the servers report, with a deadline.

Given ``tls`` (a CA and a server certificate from :func:`~.tls_helpers.make_certificates`),
every process listens only for TLS (``port 0``, ``tls-port``): the master and the
replica replicate over TLS (``tls-replication``), the sentinels talk TLS to them and
to each other and take clients without a certificate, the helpers here talk TLS to
them all (trusting the CA), and :meth:`SentinelDeployment.url` is a
``rediss+sentinel://`` URL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from .redis_helpers import RedisServer, free_port
from .tls_helpers import Certificates, TLSOnlyRedisServer

#: The name the sentinels monitor the master under.
SERVICE = "mymaster"
#: How long the master must be silent before a sentinel believes it down (ms).
DOWN_AFTER_MS = 1000
# How long a failover may take before another is tried (ms); short, for the tests.
FAILOVER_TIMEOUT_MS = 3000
#: How long a deployment may take to settle (replica synced, sentinels agreed).
SETTLE_PATIENCE = 20.0
#: How long a failover may take, from the master's death to the promoted replica.
FAILOVER_PATIENCE = 30.0
# Pause between looks at state that other processes change.
POLL = 0.05


def wait_for(condition: Callable[[], bool], what: str, within: float) -> None:
    """Return once ``condition()`` holds; raise naming ``what`` after ``within`` s.

    Blocking: from async code run it in a thread. A server that does not answer
    yet counts as the condition not holding.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within} s waiting for {what}")
        time.sleep(POLL)  # polling another process's state, with a deadline


def client(port: int, tls: Certificates | None = None) -> redis.Redis:
    """A redis-py client of the server or sentinel at ``port`` (use it in ``with``);
    with ``tls``, over TLS trusting its CA."""
    secure: dict[str, Any] = {} if tls is None else {"ssl": True, "ssl_ca_certs": str(tls.ca)}
    return redis.Redis(
        "127.0.0.1",
        port,
        socket_timeout=1,
        socket_connect_timeout=1,
        decode_responses=True,
        **secure,
    )


class SentinelDeployment:
    """A master, one replica of it, and ``count`` sentinels that monitor it as
    :data:`SERVICE` with a quorum of ``count // 2 + 1``; with ``tls``, all speaking
    only TLS with those certificates (see the module)."""

    def __init__(self, directory: Path, *, count: int = 3, tls: Certificates | None = None) -> None:
        self.directory = directory
        #: The certificates of a TLS-only deployment, or None for a plain one.
        self.tls = tls
        # Replication streams the snapshot; any file goes in ``directory``, not the cwd.
        diskless = ["--dir", str(directory), "--repl-diskless-sync", "yes"]
        diskless += ["--repl-diskless-sync-delay", "0"]
        self.master = self._server(None, *diskless)
        replica_of = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica = self._server(None, *diskless, *replica_of)
        self.sentinels = [self._sentinel(free_port()) for _ in range(count)]
        self.quorum = count // 2 + 1

    def _server(self, port: int | None, *options: str) -> RedisServer:
        if self.tls is None:
            return RedisServer(port, *options)
        return TLSOnlyRedisServer(self.tls, port, *options, "--tls-replication", "yes")

    def _sentinel(self, port: int) -> RedisServer:
        if self.tls is None:
            return RedisServer(port)
        sentinel = TLSOnlyRedisServer(self.tls, port)
        sentinel.options = ()  # its TLS settings are in its config file
        return sentinel

    def url(self, db: int = 0, *, count: int = 2) -> str:
        """A ``redis+sentinel://`` URL naming the first ``count`` sentinels;
        ``rediss+sentinel://`` for a TLS deployment (it names no CA: give
        ``ssl_ca_certs``)."""
        scheme = "redis+sentinel" if self.tls is None else "rediss+sentinel"
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels[:count])
        return f"{scheme}://{hosts}/{SERVICE}/{db}"

    def client(self, port: int) -> redis.Redis:
        """A redis-py client of the server or sentinel at ``port`` (use it in
        ``with``), over TLS trusting the deployment's CA for a TLS deployment."""
        return client(port, self.tls)

    def start(self) -> None:
        """Start every process, and return once the replica has synced and every
        sentinel knows the master, the replica and the other sentinels (so a failover
        can be agreed)."""
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            config = self.directory / f"sentinel-{sentinel.port}.conf"
            config.write_text(self._sentinel_config(sentinel.port))
            sentinel.sentinel_config = str(config)
            sentinel.start()
        wait_for(self._replica_synced, "the replica to sync", SETTLE_PATIENCE)
        self.wait_for_master(self.master.port)
        wait_for(self._sentinels_ready, "the sentinels to see it all", SETTLE_PATIENCE)

    def stop(self) -> None:
        """SIGKILL every process by its PID."""
        for server in (*self.sentinels, self.replica, self.master):
            server.kill()

    def _sentinel_config(self, port: int) -> str:
        # Sentinels rewrite their config file, so each has one of its own.
        return "\n".join(
            [
                *self._sentinel_listening(port),
                "bind 127.0.0.1",
                f"dir {self.directory}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} {self.quorum}",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1",
                "",
            ]
        )

    def _sentinel_listening(self, port: int) -> list[str]:
        if self.tls is None:
            return [f"port {port}"]
        # tls-replication: TLS to the master, the replica and the other sentinels
        # (and announce the TLS port to them).
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.tls.server_cert}",
            f"tls-key-file {self.tls.server_key}",
            f"tls-ca-cert-file {self.tls.ca}",
            "tls-replication yes",
            "tls-auth-clients no",
        ]

    def _replica_synced(self) -> bool:
        with self.client(self.replica.port) as replica:
            info = replica.info("replication")
        return info.get("master_link_status") == "up" and not info["master_sync_in_progress"]

    def _sentinels_ready(self) -> bool:
        others = len(self.sentinels) - 1
        for port in (sentinel.port for sentinel in self.sentinels):
            with self.client(port) as sentinel:
                master = sentinel.sentinel_master(SERVICE)
                replicas = sentinel.sentinel_slaves(SERVICE)
            if master["num-other-sentinels"] < others:
                return False
            if not any(r["master-link-status"] == "ok" for r in replicas):
                return False
        return True

    def master_port_seen(self) -> set[int]:
        """The master's port as each sentinel reports it."""
        ports = set()
        for port in (sentinel.port for sentinel in self.sentinels):
            with self.client(port) as sentinel:
                ports.add(int(sentinel.sentinel_get_master_addr_by_name(SERVICE)[1]))
        return ports

    def wait_for_master(self, port: int, within: float = SETTLE_PATIENCE) -> None:
        """Return once every sentinel names the server at ``port`` the master, and
        that server says it is one."""

        def agreed() -> bool:
            with self.client(port) as server:
                role = server.role()[0]
            return role == "master" and self.master_port_seen() == {port}

        wait_for(agreed, f"the sentinels to agree that 127.0.0.1:{port} is the master", within)

    def wait_for_failover(self, within: float = FAILOVER_PATIENCE) -> None:
        """Return once the replica is the master, and the old master, if it still
        runs, is a replica (until then it may still take writes, which are lost)."""
        self.wait_for_master(self.replica.port, within)
        if self.master.process is None:  # killed
            return

        def demoted() -> bool:
            with self.client(self.master.port) as old:
                return bool(old.role()[0] == "slave")

        wait_for(demoted, "the old master to become a replica", within)


@contextlib.contextmanager
def sentinel_deployment(
    directory: Path, *, count: int = 3, tls: Certificates | None = None
) -> Iterator[SentinelDeployment]:
    """A started :class:`SentinelDeployment` (``count=``, ``tls=``), stopped by PID
    afterwards."""
    deployment = SentinelDeployment(directory, count=count, tls=tls)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
