"""The env server's HTTP layer: a Starlette app that speaks the protocol's encodings and errors.

Routes are handlers ``handler(owner, payload) -> payload`` working on plain maps; this module
turns them into Starlette endpoints that authenticate the caller, read the body (or the
query string) within the size limit, decode and encode it in the negotiated encoding, and map
every failure to ``{"error": {...}}`` with its documented status (``docs/protocol.md``).

The single-env ``/step`` round trip pays this layer's cost on every environment step, so it
adds nothing to Starlette's own stack (no middleware of its own), reads just the four
request headers it needs in one pass, and caches content negotiation per header pair.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from agentgpt import wire
from agentgpt.envhost import errors
from agentgpt.envhost.auth import ApiKeys

__all__ = ["Handler", "Payload", "protocol_app"]

logger = logging.getLogger("agentgpt.envhost")

Payload = dict[str, Any]
#: ``handler(owner, payload)``: the caller's owner id and the request's map; returns the answer.
Handler = Callable[[str, Payload], Awaitable[Payload]]

_JSON = wire.JSON_MEDIA_TYPE
_WANTED_HEADERS = {b"content-type": 0, b"accept": 1, b"authorization": 2, b"content-length": 3}


class _Headers(NamedTuple):
    """The only request headers the protocol looks at."""

    content_type: str | None
    accept: str | None
    authorization: str | None
    content_length: str | None


def _read_headers(request: Request) -> _Headers:
    values: list[str | None] = [None, None, None, None]
    for name, value in request.headers.raw:  # ASGI servers send header names lower-cased
        index = _WANTED_HEADERS.get(name)
        if index is not None:
            values[index] = value.decode("latin-1")
    return _Headers(*values)


class _Negotiated(NamedTuple):
    request: str  # how to decode the body
    response: str  # how to encode the answer


@functools.lru_cache(maxsize=256)
def _negotiate(content_type: str | None, accept: str | None) -> _Negotiated:
    """Body and answer encodings (clients repeat the same headers, hence the cache)."""
    sent = wire.media_type_from_header(content_type)
    return _Negotiated(sent or _JSON, wire.media_type_from_header(accept) or sent or _JSON)


def _answer_type(request: Request) -> str:
    headers = _read_headers(request)
    return _negotiate(headers.content_type, headers.accept).response


class _Endpoints:
    """Wraps protocol handlers as Starlette endpoints and renders errors."""

    def __init__(self, keys: ApiKeys, max_body_bytes: int, debug: bool) -> None:
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.debug = debug

    # ------------------------------------------------------------------ responses

    def error_response(self, error: errors.ApiError, media_type: str) -> Response:
        """``{"error": ...}`` in ``media_type``; 5xx errors are logged with their traceback."""
        if error.status >= 500:
            if error.debug_traceback:
                logger.error("%s: %s\n%s", error.error_type, error.message, error.debug_traceback)
            else:
                logger.error("%s: %s", error.error_type, error.message)
        body = wire.encode(errors.error_body(error, self.debug), media_type)
        return Response(
            body, status_code=error.status, headers=error.headers, media_type=media_type
        )

    # ------------------------------------------------------------------ request bodies

    async def read_payload(self, request: Request, headers: _Headers, media_type: str) -> Payload:
        """The body as a map; a declared Content-Length over the limit is refused unread."""
        limit = self.max_body_bytes
        if headers.content_length is not None:
            try:
                declared = int(headers.content_length)
            except ValueError:
                declared = None
            if declared is not None and declared > limit:
                raise errors.payload_too_large(
                    f"the body is {declared} bytes; the limit is {limit} bytes"
                )
        # Counted while reading, so a chunked body is refused as soon as it grows too large.
        chunks: list[bytes] = []
        size = 0
        stream = request.stream()
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                await stream.aclose()
                raise errors.payload_too_large(f"the body exceeds the limit of {limit} bytes")
            if chunk:
                chunks.append(chunk)
        data = b"".join(chunks)  # a single chunk is returned as is, not copied
        if not data:
            return {}
        try:
            payload = wire.decode(data, media_type)
        except wire.WireError as exc:
            kind = "JSON" if media_type == _JSON else "MessagePack"
            raise errors.bad_request(f"the body is not valid {kind}: {exc}") from None
        if not isinstance(payload, dict):
            raise errors.bad_request(
                f"the body must be a map (a JSON object), got {type(payload).__name__}"
            )
        return payload

    # ------------------------------------------------------------------ endpoints

    def endpoint(
        self, handler: Handler, query: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind auth, decoding, encoding and error mapping.

        ``query``: the payload is the query string's parameters instead of the body.
        """

        async def endpoint(request: Request) -> Response:
            headers = _read_headers(request)
            negotiated = _negotiate(headers.content_type, headers.accept)
            media_type = negotiated.response
            try:
                owner = self.keys.owner_for(headers.authorization)
                if query:
                    payload: Payload = dict(request.query_params)  # the last value wins
                else:
                    payload = await self.read_payload(request, headers, negotiated.request)
                result = await handler(owner, payload)
                try:
                    body = wire.encode(result, media_type)
                except Exception as exc:
                    raise errors.ApiError(
                        500,
                        "env_error",
                        f"the env's output cannot be encoded: {type(exc).__name__}: {exc}",
                    ) from exc
            except errors.ApiError as error:
                return self.error_response(error, media_type)
            except ClientDisconnect:
                # Nobody is left to read an answer; the server just drops this one.
                return Response(status_code=400)
            except Exception as exc:
                return self.error_response(errors.internal_error(exc), media_type)
            return Response(body, media_type=media_type)

        return endpoint

    def unauthenticated(
        self, answer: Callable[[], Payload]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A route that needs no key and no body, such as ``/health``."""

        async def endpoint(request: Request) -> Response:
            media_type = _answer_type(request)
            return Response(wire.encode(answer(), media_type), media_type=media_type)

        return endpoint

    # ------------------------------------------------------------------ exception handlers

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404 for a path no route has, in the protocol's error format."""
        error = errors.not_found(f"no route {request.url.path!r}")
        return self.error_response(error, _answer_type(request))

    async def method_not_allowed(self, request: Request, exc: Exception) -> Response:
        """Starlette's 405 for a known path and the wrong method, with its ``Allow`` header."""
        raw = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        allowed = ", ".join(sorted(m for m in raw.split(", ") if m))  # a stable order
        error = errors.method_not_allowed(
            f"{request.method} is not allowed on {request.url.path} (use {allowed})", allowed
        )
        return self.error_response(error, _answer_type(request))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """Anything that escaped an endpoint: a 500 in the protocol's format, no traceback."""
        return self.error_response(errors.internal_error(exc), _answer_type(request))


def protocol_app(
    *,
    post: Mapping[str, Handler],
    get: Mapping[str, Handler],
    health: Callable[[], Payload],
    keys: ApiKeys,
    max_body_bytes: int,
    debug: bool,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
) -> Starlette:
    """The env server's ASGI app.

    ``post``: path -> handler fed the decoded body; ``get``: path -> handler fed the query
    parameters; both authenticated. ``health``: the body of ``GET /health``, which needs no
    key. Routes are matched in the given order (put the hot ones first). ``lifespan`` is
    entered at start-up and exited at shutdown. ``debug`` adds tracebacks to 5xx error bodies.
    """
    endpoints = _Endpoints(keys, max_body_bytes, debug)
    routes = [Route(path, endpoints.endpoint(h), methods=["POST"]) for path, h in post.items()]
    routes += [
        Route(path, endpoints.endpoint(h, query=True), methods=["GET"]) for path, h in get.items()
    ]
    routes.append(Route("/health", endpoints.unauthenticated(health), methods=["GET"]))
    app = Starlette(
        # Starlette's own debug mode would answer errors with HTML pages; the protocol's
        # debug mode puts the traceback into the error body instead.
        debug=False,
        routes=routes,
        exception_handlers={
            404: endpoints.not_found,
            405: endpoints.method_not_allowed,
            Exception: endpoints.server_error,
        },
        lifespan=lifespan,
    )
    # ``/step/`` is an unknown route (404), not a redirect to ``/step``.
    app.router.redirect_slashes = False
    return app
