"""Bridges between ``http.request`` messages and Starlette's Request and Response."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message as ASGIMessage

from .messages import Message

#: Responses larger than this are sent as several ``more_content`` chunks.
CHUNK_SIZE = 256 * 1024


def response_to_messages(
    response: Response, *, chunk_size: int = CHUNK_SIZE
) -> list[dict[str, Any]]:
    """Reply messages for a Starlette ``Response`` (status, headers, body in chunks).

    Streaming responses have no body to read synchronously: build a plain
    ``Response`` instead, or send ``more_content`` chunks yourself.
    """
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        raise TypeError(
            f"{type(response).__name__} has no body to encode; use a Response with a body, "
            "or send {'content': ..., 'more_content': True} chunks yourself"
        )
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] or [b""]
    messages: list[dict[str, Any]] = [
        {"content": chunk, "more_content": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    messages[0]["status"] = response.status_code
    messages[0]["headers"] = [[name, value] for name, value in response.raw_headers]
    return messages


def request_from_message(message: Message | dict[str, Any]) -> Request:
    """A Starlette ``Request`` for an ``http.request`` message (body already read)."""
    content = message.content if isinstance(message, Message) else message
    body: bytes = content.get("body", b"")
    scope = {
        "type": "http",
        "http_version": content.get("http_version", "1.1"),
        "method": content["method"],
        "scheme": content.get("scheme", "http"),
        "path": content["path"],
        "raw_path": content["path"].encode(),
        "root_path": content.get("root_path", ""),
        "query_string": content.get("query_string", "").encode("latin-1"),
        "headers": [
            (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in content.get("headers", ())
        ],
        "client": tuple(content["client"]) if content.get("client") else None,
        "server": tuple(content["server"]) if content.get("server") else None,
    }

    async def receive() -> ASGIMessage:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, receive)
    request._body = body  # the body is already in the message
    return request
