"""The HTTP relay: one request to an ``http.request`` consumer, its replies back as
the response (DESIGN §6)."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from .exceptions import ChannelFull, MessageTooLarge
from .layers.base import BaseChannelLayer
from .metrics import Metrics
from .protocol import HTTP_REQUEST, as_bytes

logger = logging.getLogger("chanlite.server")


async def relay(
    layer: BaseChannelLayer,
    content: dict[str, Any],
    replies: asyncio.Queue[dict[str, Any]],
    timeout: float,
    scope: Scope,
    receive: Receive,
    send: Send,
    metrics: Metrics,
) -> None:
    """Send ``content`` (a whole ``http.request`` message) on ``layer`` and write the
    replies that arrive on ``replies`` as the response, streamed while they say
    ``more_content``. The request is counted in ``metrics``.

    503 when ``http.request`` is full, the layer fails, or no reply comes within
    ``timeout`` seconds; 413 or 431 when the message is over the size limit; 500 for
    a first reply that is not a valid response start.
    """
    metrics.http_requests += 1
    if await _send_request(layer, content, scope, receive, send, metrics):
        await _write_replies(content, replies, timeout, scope, receive, send)


async def _send_request(
    layer: BaseChannelLayer,
    content: dict[str, Any],
    scope: Scope,
    receive: Receive,
    send: Send,
    metrics: Metrics,
) -> bool:
    """Send the ``http.request`` message; False (and the error response) if it failed."""
    try:
        await layer.send(HTTP_REQUEST, content)
        metrics.message_sent(HTTP_REQUEST)
    except ChannelFull:
        metrics.channel_full(HTTP_REQUEST)
        logger.warning("http.request is full; answering 503")
        await _answer(503, scope, receive, send)
        return False
    except MessageTooLarge as exc:
        status = _too_large_status(len(content["body"]), exc)
        method, path = content["method"], content["path"]
        logger.info("refused %s %s with %d: %s", method, path, status, exc)
        await _answer(status, scope, receive, send)
        return False
    except Exception as exc:
        log_layer_failure("answered 503", exc)
        await _answer(503, scope, receive, send)
        return False
    return True


async def _write_replies(
    content: dict[str, Any],
    replies: asyncio.Queue[dict[str, Any]],
    timeout: float,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Write the replies as the response, until one says no ``more_content``."""
    started = False
    while True:
        try:
            reply = await asyncio.wait_for(replies.get(), timeout)
        except TimeoutError:
            if not started:
                logger.warning(
                    "no reply to %s %s within http_timeout; 503",
                    content["method"],
                    content["path"],
                )
                await _answer(503, scope, receive, send)
            return
        if not started:
            if not await _start_response(reply, send):
                await _answer(500, scope, receive, send)
                return
            started = True
        more = bool(reply.get("more_content", False))
        body = as_bytes(reply.get("content", b""))
        await send({"type": "http.response.body", "body": body, "more_body": more})
        if not more:
            return


async def _answer(status: int, scope: Scope, receive: Receive, send: Send) -> None:
    """Respond with ``status`` and its phrase as a plain-text body."""
    await PlainTextResponse(HTTPStatus(status).phrase, status)(scope, receive, send)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it is over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return b"".join(chunks)
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)


async def _start_response(reply: dict[str, Any], send: Send) -> bool:
    status = reply.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        logger.error(
            "dropped an HTTP reply: 'status' must be an int from 100 to 599, got %r", status
        )
        return False
    try:
        headers = [
            [as_bytes(name).lower(), as_bytes(value)] for name, value in reply.get("headers", ())
        ]
    except (TypeError, ValueError):
        logger.error("dropped an HTTP reply: 'headers' must be [name, value] pairs of str or bytes")
        return False
    await send({"type": "http.response.start", "status": status, "headers": headers})
    return True


def _too_large_status(body_size: int, exc: MessageTooLarge) -> int:
    """413 if the body is most of an ``http.request`` message over the size limit,
    else 431 (its path, query string and headers are)."""
    return 413 if body_size * 2 >= exc.size else 431


def log_layer_failure(action: str, exc: Exception) -> None:
    """One line for a send the channel layer could not take (say, Redis is down); the
    layer logs the outage itself, once."""
    logger.warning("%s: the channel layer failed (%s: %s)", action, type(exc).__name__, exc)
