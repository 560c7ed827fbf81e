"""Channel layers, chosen by URL: ``memory://``, ``redis://``, ``sqlite:///path.db``.

:func:`get_layer` builds a layer from a URL (importing its backend lazily) or returns
a ready instance unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._importer import import_backend
from ..exceptions import ConfigurationError
from .base import BaseChannelLayer

__all__ = ["BaseChannelLayer", "get_layer", "LAYER_OPTIONS", "REDIS_OPTIONS"]

#: Options every layer takes, and how URL query values are converted.
LAYER_OPTIONS: dict[str, type] = {
    "expiry": float,
    "group_expiry": float,
    "capacity": int,
    "channel_capacity": dict,
    "prefix": str,
    "group_history": dict,
    "history_ttl": float,
    "group_presence": list,
    "presence_grace": float,
}
#: The TLS options of ``rediss://`` URLs (``chanlite.layers.redis.tls``), which the
#: Redis schemes take as well; any other scheme refuses them as unknown.
REDIS_OPTIONS: dict[str, type] = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
}

# Option types a URL's query string cannot carry.
_NOT_IN_URLS = (dict, list)

# scheme -> "module:class" of the backend, imported only when used.
_BACKENDS = {
    "memory": "chanlite.layers.memory:InMemoryChannelLayer",
    "redis": "chanlite.layers.redis:RedisChannelLayer",
    "rediss": "chanlite.layers.redis:RedisChannelLayer",
    "redis+sentinel": "chanlite.layers.redis:RedisChannelLayer",
    "rediss+sentinel": "chanlite.layers.redis:RedisChannelLayer",
    "redis+cluster": "chanlite.layers.redis:RedisChannelLayer",
    "rediss+cluster": "chanlite.layers.redis:RedisChannelLayer",
    "sqlite": "chanlite.layers.sqlite:SQLiteChannelLayer",
}


def get_layer(url_or_instance: str | BaseChannelLayer, **options: Any) -> BaseChannelLayer:
    """Build a layer from a URL, or return ``url_or_instance`` if it already is one.

    Options (``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``,
    ``prefix``, ``group_history``, ``history_ttl``, ``group_presence``,
    ``presence_grace``) come from keyword arguments and, all but the two dicts
    (``channel_capacity``, ``group_history``) and the list (``group_presence``), from
    the URL's query string; keyword arguments win. Several Redis hosts are given as one
    comma-separated URL. Raises :class:`~chanlite.exceptions.ConfigurationError` (a
    ``ValueError``) naming an unknown scheme or option, or a bad option value.
    """
    if isinstance(url_or_instance, BaseChannelLayer):
        if options:
            raise ConfigurationError("layer options cannot be given with a layer instance")
        return url_or_instance
    if not isinstance(url_or_instance, str):
        kind = type(url_or_instance).__name__
        raise ConfigurationError(f"a layer must be a URL string or a BaseChannelLayer, not {kind}")
    scheme, base_url, query_options = _split_url(url_or_instance)
    _check_option_names(options, _known_options(scheme))
    merged = {**query_options, **options}
    cls = _backend_class(scheme)
    if scheme == "memory":
        if base_url.rstrip("/").lower() != "memory:":
            raise ConfigurationError(
                f"layer URL {url_or_instance!r}: memory:// takes no host or path"
            )
        return cls(**merged)
    return cls(base_url, **merged)  # type: ignore[call-arg,arg-type]


def _split_url(url: str) -> tuple[str, str, dict[str, Any]]:
    if "://" not in url:
        raise ConfigurationError(
            f"layer URL {url!r} has no scheme; use memory://, redis://host:port/db "
            "or sqlite:///path.db"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _BACKENDS:
        known = ", ".join(f"{name}://" for name in _BACKENDS)
        raise ConfigurationError(f"unknown layer scheme {scheme!r} in {url!r}; known: {known}")
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    accepted = _known_options(scheme)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        options[name] = _convert_option(name, value, url, accepted)
    base = url.split("?", 1)[0]
    return scheme, base, options


def _known_options(scheme: str) -> dict[str, type]:
    return {**LAYER_OPTIONS, **REDIS_OPTIONS} if scheme.startswith("redis") else LAYER_OPTIONS


def _convert_option(name: str, value: str, url: str, known: dict[str, type]) -> Any:
    kind = known.get(name)
    if kind is None or kind in _NOT_IN_URLS:
        raise ConfigurationError(
            f"unknown layer option {name!r} in URL {url!r}; "
            f"known: {', '.join(n for n, kind in known.items() if kind not in _NOT_IN_URLS)}"
        )
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"layer option {name!r} in URL {url!r} must be {kind.__name__}, got {value!r}"
        ) from None


def _check_option_names(options: dict[str, Any], known: dict[str, type]) -> None:
    for name in options:
        if name not in known:
            raise ConfigurationError(f"unknown layer option {name!r}; known: {', '.join(known)}")


def _backend_class(scheme: str) -> type[BaseChannelLayer]:
    cls: type[BaseChannelLayer] = import_backend(_BACKENDS[scheme], scheme, "layer")
    return cls
