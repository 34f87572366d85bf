"""Keeping web pages away from a service: Host, Origin and Content-Type checks.

A browser lets any web page send requests to any address, loopback included, and a
server without API keys (the default, on loopback) would act on them. Three checks close
that door, in an ASGI middleware every service app runs behind (:class:`BrowserGuard`):

- **Host.** A page can point its own domain name at ``127.0.0.1`` (DNS rebinding) and
  then read the answers as if they were its own. Its requests still name that domain in
  their ``Host`` header, so a server without keys accepts only loopback names
  (``localhost``, ``127.0.0.1``, ``[::1]``, with any port) plus the names its operator
  allows; a server with keys accepts any unless its operator lists names.
- **Origin.** Browsers add an ``Origin`` header to every cross-site request a script
  makes, and to every ``POST``; clients outside a browser do not. A request carrying
  one is refused unless its operator allows that origin, and then CORS lets that page's
  scripts call the server.
- **Content-Type.** A body must declare JSON or MessagePack. A page can send
  ``text/plain`` (or a body with no type at all) without asking the server first,
  but not ``application/json``.

Refusals use the protocol's error body and vocabulary (``host_not_allowed``,
``origin_not_allowed``: 403; ``unsupported_media_type``: 415), in the encoding the
request asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentgpt import wire
from agentgpt.service import errors
from agentgpt.service.negotiation import negotiate
from agentgpt.service.serving import is_loopback

__all__ = ["ANY", "BrowserGuard", "BrowserPolicy", "browser_policy", "host_name"]

#: In a list of allowed hosts or origins: every one.
ANY = "*"

_HOST = b"host"
_ORIGIN = b"origin"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_ACCEPT = b"accept"
_WANTED = frozenset((_HOST, _ORIGIN, _CONTENT_TYPE, _CONTENT_LENGTH, _TRANSFER_ENCODING, _ACCEPT))


@dataclass(frozen=True)
class BrowserPolicy:
    """Which ``Host`` and ``Origin`` values a service accepts.

    ``hosts``: host names accepted besides the loopback names, lower case without port;
    ``None`` accepts every host. ``origins``: origins allowed to call, as browsers send
    them (``https://app.example.com``, no trailing slash); ``ANY`` allows every one.
    """

    hosts: frozenset[str] | None
    origins: frozenset[str]


def browser_policy(
    has_keys: bool, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()
) -> BrowserPolicy:
    """The policy of a server: a server without keys accepts loopback hosts only, plus
    ``allowed_hosts`` (``"*"``: any); one with keys accepts any host unless
    ``allowed_hosts`` lists some. No origin is allowed unless listed."""
    hosts = {host_name(h) for h in allowed_hosts if h.strip()}
    origins = frozenset(o.strip().rstrip("/").lower() for o in allowed_origins if o.strip())
    if ANY in hosts or (has_keys and not hosts):
        return BrowserPolicy(None, origins)
    return BrowserPolicy(frozenset(hosts), origins)


def host_name(value: str) -> str:
    """The host of a ``Host`` header value, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        value = name
    return value.removesuffix(".")


@functools.lru_cache(maxsize=256)
def _host_allowed(value: str, hosts: frozenset[str]) -> bool:
    name = host_name(value)
    return name in hosts or is_loopback(name)


@functools.lru_cache(maxsize=64)
def _declared_encoding(content_type: str) -> str | None:
    """The encoding a ``Content-Type`` value declares: one media type, JSON or MessagePack."""
    if "," in content_type:
        return None  # a list is no content type
    return wire.media_type_from_header(content_type.partition(";")[0])


class BrowserGuard:
    """ASGI middleware enforcing a :class:`BrowserPolicy` and the declared body encoding.

    It reads the few headers it needs in one pass, before the app sees the request, so a
    refused request costs no more than its head. Non-HTTP scopes pass through (the
    lifespan), WebSocket handshakes get the Host and Origin checks.
    """

    def __init__(self, app: Any, policy: BrowserPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        found: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _WANTED:
                found[name] = value.decode("latin-1")
        error = self._check(found, kind == "http")
        if error is None:
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        content_type = found.get(_CONTENT_TYPE)
        sent = _declared_encoding(content_type) if content_type else None
        media_type = negotiate(sent, found.get(_ACCEPT)).response
        body = wire.encode(errors.error_body(error), media_type)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", media_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _check(self, found: dict[bytes, str], http: bool) -> errors.ApiError | None:
        hosts = self.policy.hosts
        host = found.get(_HOST)
        # A request with no Host header at all does not come from a browser.
        if hosts is not None and host is not None and not _host_allowed(host, hosts):
            return errors.api_error(
                "host_not_allowed",
                f"this server does not answer to the host {host_name(host)!r}; its"
                " operator can allow it (--allow-host)",
            )
        origin = found.get(_ORIGIN)
        if origin is not None:
            allowed = self.policy.origins
            if ANY not in allowed and origin.strip().rstrip("/").lower() not in allowed:
                return errors.api_error(
                    "origin_not_allowed",
                    f"requests from web pages ({origin}) are refused unless the server's"
                    " operator allows their origin (--allow-origin)",
                )
        if not http:
            return None
        content_type = found.get(_CONTENT_TYPE)
        if content_type is not None:
            if _declared_encoding(content_type) is None:
                return _unsupported(f"the body's content type is {content_type!r}")
        elif _TRANSFER_ENCODING in found or found.get(_CONTENT_LENGTH, "0").strip() != "0":
            return _unsupported("the body has no content type")
        return None


def _unsupported(problem: str) -> errors.ApiError:
    return errors.api_error(
        "unsupported_media_type",
        f"{problem}; send {wire.JSON_MEDIA_TYPE} or {wire.MSGPACK_MEDIA_TYPE}",
    )
