"""The Starlette app of an agentgpt service, built from handlers on plain maps.

A server writes each route as ``handler(owner, payload) -> payload`` and hands them to
:func:`service_app`, which turns them into endpoints that authenticate the caller, read the
body (or the query string) within the size limit, decode it and encode the answer in the
negotiated encoding (JSON or MessagePack), and map every failure to ``{"error": {...}}`` with
its documented status (``docs/protocol.md``). What the handlers do is the server's business.
Every app runs behind :class:`~agentgpt.service.browsers.BrowserGuard`, which keeps web
pages out (``Host``, ``Origin`` and ``Content-Type`` checks, ``docs/security.md``).

Hot routes (an env step, an inference call) pay this layer's cost on every call, so it adds
one plain ASGI middleware to Starlette's own stack (the browser checks, one pass over the
headers), reads just the four request headers it needs in one pass, and caches content
negotiation per header pair.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from agentgpt import wire
from agentgpt.core.busy_poll import SERVER_LIMIT_S
from agentgpt.protocol.keys import AUTHORIZATION_HEADER
from agentgpt.service import errors
from agentgpt.service.bodies import read_payload
from agentgpt.service.browsers import ANY, BrowserGuard, BrowserPolicy, browser_policy
from agentgpt.service.keys import ApiKeys
from agentgpt.service.negotiation import answer_type, negotiate, read_headers
from agentgpt.service.stream import DEFAULT_MAX_IN_FLIGHT, stream_endpoint

__all__ = ["Handler", "Payload", "service_app"]

Payload = dict[str, Any]
#: ``handler(owner, payload)``: the caller's owner id and the request's map; returns the answer.
Handler = Callable[[str, Payload], Awaitable[Payload]]
_Endpoint = Callable[[Request], Awaitable[Response]]


class _Endpoints:
    """Wraps handlers as Starlette endpoints and renders errors."""

    def __init__(
        self,
        keys: ApiKeys,
        max_body_bytes: int,
        debug: bool,
        unencodable: Callable[[Exception], errors.ApiError],
        logger: logging.Logger,
    ) -> None:
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.debug = debug
        self.unencodable = unencodable
        self.logger = logger

    def error_response(self, error: errors.ApiError, media_type: str) -> Response:
        """``{"error": ...}`` in ``media_type``; 5xx errors are logged with their traceback."""
        if error.status >= 500:
            if error.debug_traceback:
                self.logger.error(
                    "%s: %s\n%s", error.error_type, error.message, error.debug_traceback
                )
            else:
                self.logger.error("%s: %s", error.error_type, error.message)
        body = wire.encode(errors.error_body(error, self.debug), media_type)
        return Response(
            body, status_code=error.status, headers=error.headers, media_type=media_type
        )

    def endpoint(self, handler: Handler, query: bool = False) -> _Endpoint:
        """``handler`` behind auth, decoding, encoding and error mapping.

        ``query``: the payload is the query string's parameters instead of the body.
        """

        async def endpoint(request: Request) -> Response:
            headers = read_headers(request)
            encodings = negotiate(headers.content_type, headers.accept)
            media_type = encodings.response
            try:
                owner = self.keys.owner_for(headers.authorization)
                if query:
                    payload: Payload = dict(request.query_params)  # the last value wins
                else:
                    payload = await read_payload(
                        request, headers.content_length, encodings.request, self.max_body_bytes
                    )
                result = await handler(owner, payload)
                try:
                    body = wire.encode(result, media_type)
                except Exception as exc:
                    raise self.unencodable(exc) from exc
            except errors.ApiError as error:
                return self.error_response(error, media_type)
            except ClientDisconnect:
                # Nobody is left to read an answer; the server just drops this one.
                return Response(status_code=400)
            except Exception as exc:
                return self.error_response(errors.internal_error(exc), media_type)
            return Response(body, media_type=media_type)

        return endpoint

    def public(self, answer: Callable[[], Payload]) -> _Endpoint:
        """A route that needs no key and no body, such as ``/health``."""

        async def endpoint(request: Request) -> Response:
            media_type = answer_type(request)
            return Response(wire.encode(answer(), media_type), media_type=media_type)

        return endpoint

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404 for a path no route has, in the protocol's error format."""
        error = errors.not_found(f"no route {request.url.path!r}")
        return self.error_response(error, answer_type(request))

    async def method_not_allowed(self, request: Request, exc: Exception) -> Response:
        """Starlette's 405 for a known path and the wrong method, with its ``Allow`` header."""
        raw = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        allowed = ", ".join(sorted(m for m in raw.split(", ") if m))  # a stable order
        error = errors.method_not_allowed(
            f"{request.method} is not allowed on {request.url.path} (use {allowed})", allowed
        )
        return self.error_response(error, answer_type(request))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """Anything that escaped an endpoint: a 500 in the protocol's format, no traceback."""
        return self.error_response(errors.internal_error(exc), answer_type(request))


def service_app(
    *,
    post: Mapping[str, Handler],
    get: Mapping[str, Handler],
    public: Mapping[str, Callable[[], Payload]],
    keys: ApiKeys,
    max_body_bytes: int,
    debug: bool,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
    unencodable: Callable[[Exception], errors.ApiError] = errors.internal_error,
    logger: logging.Logger | None = None,
    browsers: BrowserPolicy | None = None,
    stream: str | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    websockets: Mapping[str, Callable[[Any], Awaitable[None]]] | None = None,
    busy_poll_s: float = SERVER_LIMIT_S,
) -> Starlette:
    """A service's ASGI app.

    ``post``: path -> handler fed the decoded body; ``get``: path -> handler fed the query
    parameters; both authenticated. ``public``: path -> the body of a ``GET`` route that
    needs no key, such as ``/health``. Routes are matched in the given order (put the hot
    ones first). ``lifespan`` is entered at start-up and exited at shutdown. ``debug`` adds
    tracebacks to 5xx error bodies. ``unencodable`` turns a handler's answer the encoding
    cannot carry into the error sent instead (a 500 ``internal_error`` unless the server
    knows better). 5xx errors are logged to ``logger`` (``agentgpt.service`` by default).
    ``browsers``: the hosts and web-page origins accepted
    (:func:`~agentgpt.service.browsers.browser_policy` of ``keys`` when ``None``: loopback
    hosts only without keys, no origin); allowed origins also get CORS answers.
    ``stream``: the path of a WebSocket route that serves the ``post`` and ``get``
    handlers as a streaming session (:mod:`agentgpt.service.stream`), with at most
    ``max_in_flight`` requests of one connection running at once, and polled for up to
    ``busy_poll_s`` seconds for its next request while requests follow each other closely
    (:mod:`agentgpt.core.busy_poll`); ``None``: none.
    ``websockets``: path -> endpoint of further WebSocket routes, which check keys
    themselves (the browser checks still apply at their upgrade).
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    endpoints = _Endpoints(
        keys,
        max_body_bytes,
        debug,
        unencodable,
        logger or logging.getLogger("agentgpt.service"),
    )
    routes = [Route(path, endpoints.endpoint(h), methods=["POST"]) for path, h in post.items()]
    routes += [
        Route(path, endpoints.endpoint(h, query=True), methods=["GET"]) for path, h in get.items()
    ]
    routes += [
        Route(path, endpoints.public(answer), methods=["GET"]) for path, answer in public.items()
    ]
    if stream is not None:
        endpoint = stream_endpoint(
            post=post,
            get=get,
            keys=keys,
            max_frame_bytes=max_body_bytes,
            debug=debug,
            logger=endpoints.logger,
            unencodable=unencodable,
            max_in_flight=max_in_flight,
            public=public,
            busy_poll_s=busy_poll_s,
        )
        routes.append(WebSocketRoute(stream, endpoint))
    routes += [WebSocketRoute(path, endpoint) for path, endpoint in (websockets or {}).items()]
    policy = browsers or browser_policy(keys.enabled)
    middleware = [Middleware(BrowserGuard, policy=policy)]
    if policy.origins:
        # Pages of an allowed origin ask first (a CORS preflight) before sending JSON.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=["*"] if ANY in policy.origins else sorted(policy.origins),
                allow_methods=["GET", "POST", "PUT"],
                allow_headers=[AUTHORIZATION_HEADER, "Content-Type", "Accept"],
            )
        )
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
        middleware=middleware,
    )
    # ``/step/`` is an unknown route (404), not a redirect to ``/step``.
    app.router.redirect_slashes = False
    return app
