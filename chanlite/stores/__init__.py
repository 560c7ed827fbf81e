"""Session stores, chosen like layers: ``memory://``, ``redis://``, ``sqlite:///path.db``.

:func:`get_session_store` turns a setting into a :class:`SessionStore`:

* a :class:`SessionStore` instance is used as it is;
* a URL picks the backend by its scheme, importing the backend module only then:
  ``memory://``, ``redis://host:port/db`` (also ``rediss://``, ``redis+sentinel://``
  and comma-separated shards, as for the Redis layer) or ``sqlite:///path.db``. Redis
  and SQLite URLs take the query option ``?prefix=name`` (default ``chanlite``), and
  ``rediss://`` URLs the layer's TLS options (``ssl_ca_certs`` and the others);
* ``None`` means "where the layer is": one store per layer instance, cached for as
  long as the layer lives, so every worker of that layer in the process shares it.
  A memory layer gets a :class:`~chanlite.stores.memory.MemorySessionStore`, a Redis
  layer a store on its connections and prefix, a SQLite layer a store in its file
  under its prefix. With no layer either, a new memory store.

Anything else raises :class:`~chanlite.exceptions.ConfigurationError`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._importer import import_backend
from ..exceptions import ConfigurationError
from ..layers import REDIS_OPTIONS
from ..layers.base import BaseChannelLayer
from .base import SessionStore

__all__ = ["SessionStore", "get_session_store"]

# scheme -> "module:class" of the backend, imported only when used.
_BACKENDS = {
    "memory": "chanlite.stores.memory:MemorySessionStore",
    "redis": "chanlite.stores.redis:RedisSessionStore",
    "rediss": "chanlite.stores.redis:RedisSessionStore",
    "redis+sentinel": "chanlite.stores.redis:RedisSessionStore",
    "rediss+sentinel": "chanlite.stores.redis:RedisSessionStore",
    "redis+cluster": "chanlite.stores.redis:RedisSessionStore",
    "rediss+cluster": "chanlite.stores.redis:RedisSessionStore",
    "sqlite": "chanlite.stores.sqlite:SQLiteSessionStore",
}
#: Options a store URL's query string may give.
STORE_OPTIONS = ("prefix",)
_ACCEPTED = (
    "a SessionStore, None (the layer's backend), or a URL: memory://, "
    "redis://host:port/db, rediss://host:port/db, "
    "redis+sentinel://host:26379/service/db, redis+cluster://host:port[,host:port] "
    "or sqlite:///path.db"
)

_per_layer: weakref.WeakKeyDictionary[BaseChannelLayer, SessionStore] = weakref.WeakKeyDictionary()
_per_layer_lock = threading.Lock()


def get_session_store(
    setting: SessionStore | str | None = None, layer: BaseChannelLayer | None = None
) -> SessionStore:
    """The session store a setting names (see the module docstring for the forms).

    Raises :class:`~chanlite.exceptions.ConfigurationError` naming the bad value and
    the accepted forms.
    """
    if isinstance(setting, SessionStore):
        return setting
    if isinstance(setting, str):
        return _from_url(setting)
    if setting is not None:
        kind = type(setting).__name__
        raise ConfigurationError(f"session store setting {setting!r} ({kind}): use {_ACCEPTED}")
    if layer is None:
        return _backend_class("memory")()
    return _for_layer(layer)


# -- URLs ------------------------------------------------------------------------------


def _from_url(url: str) -> SessionStore:
    scheme, base, options = _split_url(url)
    cls = _backend_class(scheme)
    if scheme == "memory":
        if base.rstrip("/").lower() != "memory:" or options:
            raise ConfigurationError(
                f"session store URL {url!r}: memory:// takes no host, path or options"
            )
        return cls()
    store: SessionStore = cls(base, **options)  # type: ignore[call-arg]
    return store


def _split_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """(scheme, URL without its query, options from the query)."""
    if "://" not in url:
        raise ConfigurationError(f"session store {url!r} has no URL scheme; use {_ACCEPTED}")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _BACKENDS:
        known = ", ".join(f"{name}://" for name in _BACKENDS)
        raise ConfigurationError(
            f"unknown session store scheme {scheme!r} in {url!r}; known: {known}"
        )
    options: dict[str, Any] = {}
    accepted = [*STORE_OPTIONS, *REDIS_OPTIONS] if scheme.startswith("redis") else STORE_OPTIONS
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in accepted:
            raise ConfigurationError(
                f"unknown session store option {name!r} in URL {url!r}; "
                f"known: {', '.join(accepted)}"
            )
        options[name] = value
    return scheme, url.split("?", 1)[0], options


def _backend_class(scheme: str) -> type[SessionStore]:
    cls: type[SessionStore] = import_backend(_BACKENDS[scheme], scheme, "session store")
    return cls


# -- the layer's backend -----------------------------------------------------------------


def _for_layer(layer: BaseChannelLayer) -> SessionStore:
    """The one store of ``layer`` in this process, made on first use."""
    if not isinstance(layer, BaseChannelLayer):
        kind = type(layer).__name__
        raise ConfigurationError(f"layer must be a BaseChannelLayer or None, not {kind}")
    with _per_layer_lock:
        store = _per_layer.get(layer)
        if store is None:
            made = layer.make_session_store()
            if made is None:
                raise ConfigurationError(
                    f"the layer {layer!r} keeps no session store; "
                    f"give the session store setting explicitly: {_ACCEPTED}"
                )
            store = _per_layer[layer] = made
        return store
