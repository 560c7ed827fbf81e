"""TLS options of ``rediss://`` URLs (:class:`TLSOptions`), and the SSL context they
make.

The option names are redis-py's (and so channels_redis's): ``ssl_ca_certs`` (a CA
file to trust instead of the system's), ``ssl_certfile`` and ``ssl_keyfile`` (a
client certificate, for a server started with ``--tls-auth-clients yes``) and
``ssl_cert_reqs``: ``required`` (the default: the server's certificate must be
valid and name the host), ``optional`` (it is checked if sent, the host name is not)
or ``none`` (no checks at all). They are given as URL query parameters or as
keyword options; every file is read when the layer or store is made, so a missing or
unreadable one is a ConfigurationError naming it, not a failure at first use.

It also says why a TLS handshake failed, when redis-py's error hides it
(:func:`handshake_refusal`, :func:`chained_tls_refusal`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ...exceptions import ConfigurationError

# How long a handshake made only to learn why TLS fails may take (seconds).
HANDSHAKE_PATIENCE = 2.0
#: ``ssl_cert_reqs`` values, and the verification mode each means.
CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


@dataclass(frozen=True)
class TLSOptions:
    """The TLS options of a layer or store; all ``None`` means the defaults."""

    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str | None = None

    @classmethod
    def take(cls, options: dict[str, Any]) -> TLSOptions:
        """The TLS options among ``options``, removed from it."""
        names = [field.name for field in fields(cls) if field.name in options]
        return cls(**{name: options.pop(name) for name in names})

    @property
    def given(self) -> list[str]:
        """The names of the options that were set."""
        return [name for name, value in vars(self).items() if value is not None]

    def redis_kwargs(self) -> dict[str, Any]:
        """These options as redis-py's client keyword arguments (``ssl=True`` too),
        for the client that reads a cluster's slot map. Call :meth:`context` first:
        it checks them."""
        kwargs: dict[str, Any] = {name: getattr(self, name) for name in self.given}
        # redis-py knows the lower-case names only; chanlite takes any case.
        kwargs["ssl_cert_reqs"] = (self.ssl_cert_reqs or "required").lower()
        kwargs["ssl_check_hostname"] = kwargs["ssl_cert_reqs"] == "required"
        kwargs["ssl"] = True
        return kwargs

    def context(self) -> ssl.SSLContext:
        """A client SSL context for these options.

        Raises :class:`~chanlite.exceptions.ConfigurationError` naming a bad value, or
        a file that cannot be read or holds no usable certificate or key.
        """
        verify = _verify_mode(self.ssl_cert_reqs)
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigurationError("TLS option 'ssl_keyfile' needs 'ssl_certfile' as well")
        context = ssl.create_default_context()
        if self.ssl_ca_certs is not None:
            path = _readable("ssl_ca_certs", self.ssl_ca_certs)
            _load("ssl_ca_certs", path, lambda: context.load_verify_locations(cafile=path))
        if self.ssl_certfile is not None:
            certfile = _readable("ssl_certfile", self.ssl_certfile)
            keyfile = None
            if self.ssl_keyfile is not None:
                keyfile = _readable("ssl_keyfile", self.ssl_keyfile)
            _load(
                "ssl_certfile/ssl_keyfile",
                f"{certfile}, {keyfile}" if keyfile else certfile,
                lambda: context.load_cert_chain(certfile, keyfile),
            )
        # The host name is checked only when the certificate must be valid.
        context.check_hostname = verify == ssl.CERT_REQUIRED
        context.verify_mode = verify
        return context


async def handshake_refusal(
    hosts: Iterable[tuple[str, int]], context: ssl.SSLContext | None
) -> str | None:
    """Why the first of ``hosts`` that answers refuses a TLS handshake with
    ``context``, if it does (None: no refusal, or no host answered).

    redis-py keeps only the text of the failures of some clients (the Sentinel one),
    which some of its versions garble (redis/redis-py#3209): a handshake of our own,
    with the same SSL context, finds the reason.
    """
    if context is None:
        return None
    for host, port in hosts:
        try:
            async with asyncio.timeout(HANDSHAKE_PATIENCE):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host
                )
        except ssl.SSLError as error:
            return str(error.reason or error)
        except (OSError, TimeoutError):
            continue
        writer.transport.abort()
    return None


def chained_tls_refusal(error: BaseException) -> str | None:
    """The reason of the SSL error behind ``error`` (redis-py keeps it in the chain of
    its connection error, whose own text some versions garble), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _verify_mode(value: object) -> ssl.VerifyMode:
    if value is None:
        return ssl.CERT_REQUIRED
    mode = CERT_REQS.get(value.lower()) if isinstance(value, str) else None
    if mode is None:
        raise ConfigurationError(
            f"TLS option 'ssl_cert_reqs' must be one of {', '.join(CERT_REQS)}, got {value!r}"
        )
    return mode


def _readable(name: str, value: object) -> str:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigurationError(f"TLS option {name!r} must be a file path, got {value!r}")
    if not Path(value).is_file():
        raise ConfigurationError(f"TLS option {name!r}: no such file: {str(value)!r}")
    return str(value)


def _load(name: str, what: str, load: Callable[[], object]) -> None:
    try:
        load()
    except OSError as error:  # ssl.SSLError is one: a file that is not PEM, or no match
        reason = getattr(error, "reason", None) or error.strerror or error
        raise ConfigurationError(f"TLS option {name!r}: cannot load {what!r}: {reason}") from None
