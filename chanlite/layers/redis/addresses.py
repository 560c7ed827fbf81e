"""Layer URLs: one ``redis://``, ``rediss://`` (TLS) or ``redis+sentinel://`` URL per
shard, comma-separated, parsed into one :class:`RedisAddress` per shard; or one
``redis+cluster://`` (``rediss+cluster://``) URL naming a Redis Cluster's seed nodes.

``redis://a:6379/0,redis://b:6379/0`` names two shards;
``redis+sentinel://s1:26379,s2:26379/mymaster/0`` finds the master through Sentinel
(``rediss+sentinel://``: sentinels and master over TLS);
``redis+cluster://a:7000,b:7001`` reads a cluster's slot map from either seed node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ...exceptions import ConfigurationError

#: The layer's URL when none is given.
DEFAULT_URL = "redis://localhost:6379/0"
# Default ports of a Redis server and of a Sentinel.
REDIS_PORT, SENTINEL_PORT = 6379, 26379

#: The URL schemes of a Redis server or Sentinel-managed master, and of a cluster.
SCHEMES = (
    "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"
)  # fmt: skip
# A comma starting the next URL (not one between the hosts of a Sentinel URL).
_NEXT_URL = re.compile(r",(?=[a-zA-Z][a-zA-Z0-9+.-]*://)")


@dataclass(frozen=True)
class RedisAddress:
    """One server (or Sentinel-managed master) of a layer, one shard; or the seed
    nodes of a cluster."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    service: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``host:port`` (or the Sentinel service and its sentinels), for logs."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        if self.service is not None:
            return f"{self.service} via sentinel {hosts}"
        return hosts

    @property
    def tls(self) -> bool:
        """Whether its connections use TLS (``rediss://``, ``rediss+sentinel://``,
        ``rediss+cluster://``)."""
        return self.scheme.startswith("rediss")

    @property
    def cluster(self) -> bool:
        """Whether this names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
        return self.scheme.endswith("+cluster")


def parse_redis_url(url: str) -> list[RedisAddress]:
    """Parse a layer URL: one or more comma-separated ``redis://``, ``rediss://`` or
    ``redis+sentinel://`` URLs, one per shard; or one cluster URL.

    Raises :class:`~chanlite.exceptions.ConfigurationError` naming what is wrong.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a Redis layer URL must be a non-empty str, got {url!r}")
    if "?" in url:
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r} has a query string; give layer options as keyword "
            "arguments, or put them in the URL given to get_layer()"
        )
    addresses = [_parse_address(part, url) for part in _NEXT_URL.split(url)]
    if len(addresses) > 1 and any(address.cluster for address in addresses):
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r} combines a cluster URL with other URLs; a cluster "
            "is one URL naming its seed nodes: redis+cluster://a:7000,b:7001"
        )
    seen = set()
    for address in addresses:
        where = (address.hosts, address.db, address.service)
        if where in seen:
            raise ConfigurationError(f"Redis URL {_redact(url)!r} names {address.label} twice")
        seen.add(where)
    return addresses


def _parse_address(part: str, url: str) -> RedisAddress:
    scheme = part.split("://", 1)[0].lower() if "://" in part else ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"{_redact(part)!r} in Redis URL {_redact(url)!r} is not a redis://, "
            "rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or "
            "rediss+cluster:// URL"
        )
    parts = urlsplit(part)
    if parts.fragment:
        raise ConfigurationError(f"Redis URL {_redact(part)!r} must not have a #fragment")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinel, cluster = scheme.endswith("+sentinel"), scheme.endswith("+cluster")
    hosts = _parse_hosts(hostlist, SENTINEL_PORT if sentinel else REDIS_PORT, part)
    if not (sentinel or cluster) and len(hosts) > 1:
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r} names several hosts; give each shard its own URL: "
            "redis://a:6379/0,redis://b:6379/0"
        )
    service, db = _parse_path(parts.path, sentinel, part)
    if cluster and db != 0:
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r} names database {db}; a Redis Cluster has only database 0"
        )
    return RedisAddress(
        scheme, hosts, db, service, unquote(username) or None, unquote(password) or None
    )


def _parse_hosts(hostlist: str, default_port: int, part: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in hostlist.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host and len(hostlist.split(",")) > 1:
            raise ConfigurationError(f"Redis URL {_redact(part)!r} has an empty host")
        hosts.append((host or "localhost", _parse_port(port_text, default_port, part)))
    return tuple(hosts)


def _parse_port(text: str, default: int, part: str) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r}: the port must be a number from 1 to 65535, got {text!r}"
        )
    return int(text)


def _parse_path(path: str, sentinel: bool, part: str) -> tuple[str | None, int]:
    pieces = [piece for piece in path.split("/") if piece]
    service = pieces.pop(0) if sentinel and pieces else None
    if sentinel and service is None:
        raise ConfigurationError(
            f"Sentinel URL {_redact(part)!r} must name the master: "
            "redis+sentinel://host:26379/mymaster/0"
        )
    if len(pieces) > 1 or (pieces and not pieces[0].isdigit()):
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r}: the database must be a number, got {path!r}"
        )
    return service, int(pieces[0]) if pieces else 0


def _redact(url: str) -> str:
    """``url`` with any password replaced, fit for an error message."""
    return re.sub(r"(://[^:@/,]*:)[^@/]*@", r"\1***@", url)
