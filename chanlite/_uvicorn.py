"""The uvicorn protocols ``chanlite serve`` runs: uvicorn's own, hardened against bad
clients. Plain ``uvicorn main:app`` runs without them.

* :class:`HttpToolsProtocol` refuses a request whose request line and headers are
  over :data:`MAX_REQUEST_HEAD` bytes with 431. uvicorn's httptools parser has no
  limit of its own: it would read any amount of headers into memory.
* :class:`WebSocketProtocol` sends the 414 or 431 that websockets makes for a
  handshake over its limits (8 KiB lines, 128 headers) and closes. uvicorn before
  0.55 leaves that answer unsent and the client waiting, on a connection that never
  ends; every release gets the refusal logged in one line. It also leaves alone, at
  shutdown, a connection whose client has just closed it (uvicorn would raise).
* :func:`quiet_client_errors` drops uvicorn's traceback for a text frame that is not
  UTF-8: a client's mistake, which the interface server logs in one line. It also
  hides the value of a ``session_key`` query parameter in uvicorn's request lines:
  whoever reads the log must not be able to log in with it.
"""

from __future__ import annotations

import logging
import re

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .sessions.session import SESSION_QUERY_PARAMETER

logger = logging.getLogger("chanlite.server")

#: Largest request line plus headers read; more is refused with 431.
MAX_REQUEST_HEAD = 64 * 1024
#: Import strings of the protocols, for ``uvicorn.Config(http=..., ws=...)``.
HTTP_PROTOCOL = "chanlite._uvicorn:HttpToolsProtocol"
WS_PROTOCOL = "chanlite._uvicorn:WebSocketProtocol"

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\n"
    b"connection: close\r\n\r\n"
    b"Request Header Fields Too Large"
)
# What uvicorn logs, with a traceback, for a text frame that is not UTF-8.
_INVALID_UTF8 = "Invalid UTF-8 sequence received from client."
# A session key in a query string, as uvicorn's request lines show it.
_SESSION_VALUE = re.compile(rf"(\b{SESSION_QUERY_PARAMETER}=)[^&\s\"]*")


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol, with a bound on each request's head."""

    # Bytes read since the current request began, while its head is incomplete;
    # None once its headers are complete.
    _head: int | None = 0

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        self._head += len(data)
        super().data_received(data)  # may complete the head
        if self._head is not None and self._head > MAX_REQUEST_HEAD:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head = 0

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        logger.info(
            "refused a request with 431: its request line and headers are over %d bytes",
            MAX_REQUEST_HEAD,
        )
        self.transport.write(_HEAD_TOO_LARGE)
        self.transport.close()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, answering the handshakes websockets refuses.

    uvicorn 0.55 sends that answer itself; older releases leave it unsent. Either
    way the refusal is logged once, here.
    """

    _refusal_logged = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        refusal = self.conn.handshake_exc
        if refusal is None or self.handshake_initiated or self._refusal_logged:
            return
        self._refusal_logged = True
        logger.info("refused a WebSocket handshake: %s: %s", type(refusal).__name__, refusal)
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def shutdown(self) -> None:
        """uvicorn's shutdown of this connection, unless its closing handshake is
        already done: the client closed it a moment ago and only the transport's end is
        pending. uvicorn would send a close frame of its own, which websockets refuses
        (``InvalidState``), ending the server's graceful stop with a traceback."""
        if self.transport.is_closing():
            self.stop_keepalive()
            return
        super().shutdown()


def quiet_client_errors() -> None:
    """Stop uvicorn from logging a traceback for a text frame that is not UTF-8
    (the interface server logs the socket's close with 1007 instead), and from
    showing session keys given in query strings."""
    logging.getLogger("uvicorn.error").addFilter(_drop_invalid_utf8)
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_redact_session_keys)


def _drop_invalid_utf8(record: logging.LogRecord) -> bool:
    return record.msg != _INVALID_UTF8


def _redact_session_keys(record: logging.LogRecord) -> bool:
    """Replace the value of every ``session_key=`` in the record's arguments."""
    if isinstance(record.args, tuple):
        record.args = tuple(
            _SESSION_VALUE.sub(r"\1[hidden]", arg) if isinstance(arg, str) else arg
            for arg in record.args
        )
    return True
