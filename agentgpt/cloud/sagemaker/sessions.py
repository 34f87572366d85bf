"""SageMaker stateful sessions, the container's side (an ASGI middleware).

An endpoint with several instances routes each call to any of them, but an agent's
context (its last K observations) lives on the one instance that saw it. SageMaker's
stateful sessions pin a client to one instance:

- a call with ``X-Amzn-SageMaker-Session-Id: NEW_SESSION`` starts a session: the
  container answers with ``X-Amzn-SageMaker-New-Session-Id: <id>; Expires=<time>``, and
  SageMaker sends every later call carrying ``<id>`` to this same instance;
- a call with the id and the body ``{"requestType": "CLOSE"}`` ends it: the container
  answers ``X-Amzn-SageMaker-Closed-Session-Id: <id>``.

Other calls pass through unchanged. The server's own ``session`` field (which scopes
agent ids) is separate: routing decides which instance answers, ``session`` which agents
a call names.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agentgpt.wire import WireError, decode, media_type_from_header

__all__ = [
    "CLOSED_SESSION_HEADER",
    "NEW_SESSION",
    "NEW_SESSION_HEADER",
    "SESSION_HEADER",
    "StatefulSessions",
]

SESSION_HEADER = "x-amzn-sagemaker-session-id"
NEW_SESSION_HEADER = "x-amzn-sagemaker-new-session-id"
CLOSED_SESSION_HEADER = "x-amzn-sagemaker-closed-session-id"
NEW_SESSION = "NEW_SESSION"
#: Bodies up to this size are looked at for a CLOSE request (a CLOSE body is tiny).
_INSPECT_LIMIT = 4096

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StatefulSessions:
    """Wraps the inference server's ASGI app; ``ttl_seconds`` is the expiry announced for
    a new session (SageMaker ends routing to it then)."""

    def __init__(self, app: Any, ttl_seconds: float = 3600.0) -> None:
        self.app = app
        self.ttl_seconds = float(ttl_seconds)
        #: Sessions started here and not closed yet.
        self.open_sessions: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        raw = headers.get(SESSION_HEADER.encode())
        if raw is None:
            await self.app(scope, receive, send)
            return
        session_id = raw.decode("latin-1").strip()
        body, more, receive = await _peek(receive)
        if not more and _is_close(body, headers.get(b"content-type")):
            self.open_sessions.discard(session_id)
            await _answer(send, 200, b'{"closed": true}', [(CLOSED_SESSION_HEADER, session_id)])
            return
        if session_id != NEW_SESSION:
            await self.app(scope, receive, send)
            return
        new_id = secrets.token_hex(16)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=self.ttl_seconds
        )
        value = f"{new_id}; Expires={expires.strftime('%Y-%m-%dT%H:%M:%SZ')}"

        async def send_with_session(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                self.open_sessions.add(new_id)
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (NEW_SESSION_HEADER.encode(), value.encode("latin-1")),
                ]
            await send(message)

        await self.app(scope, receive, send_with_session)


async def _peek(receive: Receive) -> tuple[bytes, bool, Receive]:
    """Read the body's start (up to the inspection limit); return it, whether more
    follows, and a ``receive`` that replays it before the rest."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= _INSPECT_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away: hand the message on as it came.
            return b"", False, _replay_once(message, receive)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return body, more, replay


def _replay_once(message: MutableMapping[str, Any], receive: Receive) -> Receive:
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return message
        return await receive()

    return replay


def _is_close(body: bytes, content_type: bytes | None) -> bool:
    if not body or len(body) > _INSPECT_LIMIT:
        return False
    media_type = media_type_from_header(content_type.decode("latin-1") if content_type else None)
    try:
        payload = decode(body, media_type or "application/json")
    except (WireError, ValueError):
        return False
    return isinstance(payload, dict) and payload.get("requestType") == "CLOSE"


async def _answer(send: Send, status: int, body: bytes, extra: list[tuple[str, str]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *[(k.encode(), v.encode("latin-1")) for k, v in extra],
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
