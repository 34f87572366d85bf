"""The HTTP plumbing under the env server: a minimal ASGI app with exact-path routing.

The protocol has eight fixed routes, maps for bodies and its own content negotiation, so
a web framework's request objects, regex routing and middleware stack would only add
per-request cost, and the single-env ``/step`` round trip pays that cost on every
environment step: on the 2-core reference machine a Starlette app took about 40 µs more
server CPU per request than a bare ASGI callable, against roughly 200-250 µs for a whole
remote step. This module does just what the server needs: the four headers it reads, the
body with a size limit, one-shot responses, and the ASGI lifespan protocol for start-up
and shutdown work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "AsgiApp",
    "BodyTooLarge",
    "ClientDisconnected",
    "HttpRequest",
    "Route",
    "send_response",
]

logger = logging.getLogger("agentgpt.envhost")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_WANTED_HEADERS = {
    b"content-type": 0,
    b"accept": 1,
    b"authorization": 2,
    b"content-length": 3,
}


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


class BodyTooLarge(Exception):
    """The body is longer than allowed; ``declared`` tells whether Content-Length said so."""

    def __init__(self, limit: int, declared: int | None) -> None:
        super().__init__(limit)
        self.limit = limit
        self.declared = declared


class HttpRequest:
    """One HTTP request: method, path, the headers the server reads, and its body."""

    __slots__ = (
        "_receive",
        "accept",
        "authorization",
        "content_length",
        "content_type",
        "method",
        "path",
        "query_string",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        values: list[str | None] = [None, None, None, None]
        for name, value in scope["headers"]:
            index = _WANTED_HEADERS.get(name)
            if index is not None:
                values[index] = value.decode("latin-1")
        self.content_type, self.accept, self.authorization, self.content_length = values

    def query(self) -> dict[str, str]:
        """Query parameters (the last value wins for repeated names)."""
        return dict(parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True))

    async def body(self, limit: int) -> bytes:
        """The whole body, refusing more than ``limit`` bytes.

        A declared ``Content-Length`` over the limit is refused before anything is read;
        a chunked body is refused as soon as it grows past the limit.
        """
        if self.content_length is not None:
            try:
                declared = int(self.content_length)
            except ValueError:
                declared = None
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit, declared)
        message = await self._receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        data = message.get("body", b"")
        if not message.get("more_body", False):
            if len(data) > limit:
                raise BodyTooLarge(limit, None)
            return data
        chunks = [data]
        size = len(data)
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit, None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    media_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Send a complete response in one ``start`` and one ``body`` message."""
    raw = [
        (b"content-type", media_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("latin-1")),
    ]
    if headers:
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


#: ``endpoint(request, send)`` answers one request completely.
Endpoint = Callable[[HttpRequest, Send], Awaitable[None]]


class Route:
    """An exact path, its method and the endpoint that answers it."""

    __slots__ = ("endpoint", "method", "path")

    def __init__(self, path: str, method: str, endpoint: Endpoint) -> None:
        self.path = path
        self.method = method
        self.endpoint = endpoint


class AsgiApp:
    """Dispatches HTTP requests by exact path and runs a lifespan context.

    ``fallback(request, send, allowed)`` answers requests that match no route
    (``allowed is None``) or use the wrong method (``allowed`` names the right one).
    ``lifespan`` is an async context manager factory entered at start-up and exited at
    shutdown.
    """

    def __init__(
        self,
        routes: list[Route],
        fallback: Callable[[HttpRequest, Send, str | None], Awaitable[None]],
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    ) -> None:
        self._routes = {route.path: route for route in routes}
        self._fallback = fallback
        self._lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request = HttpRequest(scope, receive)
            route = self._routes.get(request.path)
            if route is not None and route.method == request.method:
                await route.endpoint(request, send)
            else:
                await self._fallback(request, send, route.method if route else None)
        elif kind == "lifespan":
            await self._run_lifespan(receive, send)
        # Other scope types (websocket) are not served; returning closes them.

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        context = self._lifespan()
        try:
            await context.__aenter__()
        except BaseException as exc:
            logger.exception("env server start-up failed")
            await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await context.__aexit__(None, None, None)
        except BaseException as exc:
            logger.exception("env server shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})
