"""Connection-level limits: what a client may hold open before a single request is checked.

An API key is checked only once a request's head has arrived, so everything before that
point must be bounded by the server itself, or a client with no key at all can lock
everyone out: by opening connections and never finishing a request head (each one holds a
socket and a file descriptor for as long as it likes), or by sending a head of many
megabytes (the HTTP parser buffers it all before the app sees a byte). uvicorn bounds
neither: it times out only idle keep-alive connections, and its httptools parser has no
size limit. :class:`ConnectionLimits` are enforced by a subclass of uvicorn's own HTTP
protocol (httptools or h11), handed to uvicorn through ``uvicorn.Config(http=...)``:

- a request head must be complete within ``head_timeout`` seconds, counted from the
  connection's opening, or for a later request on a keep-alive connection from its first
  byte; the connection is closed otherwise, whether the client trickles bytes or sends
  nothing;
- a connection idle between requests is closed after ``keep_alive_timeout`` seconds
  (uvicorn's own keep-alive timer);
- a request head (request line and headers) larger than ``max_head_bytes`` is refused with
  ``431`` before the parser buffers more of it;
- a connection past ``max_connections`` open ones, or past ``max_connections_per_ip``
  from one client address, is answered ``503`` and closed at once, before it is read.

Refusals carry the protocol's error body (``headers_too_large``, ``too_many_connections``)
in JSON, since no ``Accept`` header has been read yet.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from typing import Any

from agentgpt import wire
from agentgpt.service import errors

__all__ = [
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_IP",
    "DEFAULT_MAX_HEAD_BYTES",
    "ConnectionLimits",
    "guarded_protocol",
]

logger = logging.getLogger("agentgpt.service")

DEFAULT_HEAD_TIMEOUT = 10.0
# The project's client replaces an idle connection after 4 s, a little before this.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
# Well below the usual limit of 1024 open files, which the server also needs for its envs.
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_MAX_CONNECTIONS_PER_IP = 256


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server lets its clients hold; the defaults suit a server for a few trainers.

    ``head_timeout``: seconds to deliver a complete request head. ``keep_alive_timeout``:
    seconds an idle connection is kept between requests. ``max_head_bytes``: the largest
    request head (request line and headers). ``max_connections``: open connections in
    total; ``max_connections_per_ip``: from one client IP address.
    """

    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP

    def __post_init__(self) -> None:
        for name in ("head_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        # A head needs at least a request line and a Host header.
        if self.max_head_bytes < 256:
            raise ValueError("max_head_bytes must be at least 256")
        for name in ("max_connections", "max_connections_per_ip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


class _Admission:
    """The open connections of one server, in total and by peer address.

    Used only from the server's event loop, so it needs no lock.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_peer: dict[str, int] = {}

    def admit(self, peer: str) -> str | None:
        """Counts a new connection from ``peer``; the reason it is refused, if it is."""
        if self.total >= self.limits.max_connections:
            return f"the server has {self.total} open connections, its limit"
        held = self.by_peer.get(peer, 0)
        if held >= self.limits.max_connections_per_ip:
            return f"{peer} has {held} open connections, the limit per client address"
        self.total += 1
        self.by_peer[peer] = held + 1
        return None

    def release(self, peer: str) -> None:
        self.total -= 1
        held = self.by_peer[peer] - 1
        if held:
            self.by_peer[peer] = held
        else:
            del self.by_peer[peer]


def _refusal(status: int, error_type: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer carrying the protocol's error body, closing the connection."""
    body = wire.encode(
        errors.error_body(errors.api_error(error_type, message)), wire.JSON_MEDIA_TYPE
    )
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        f"content-type: {wire.JSON_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Guarded:
    """The limits, mixed into uvicorn's HTTP protocol classes ahead of them.

    The subclasses tell whether the parser is between requests or inside a head
    (:meth:`_reading_head`); everything else works through methods both of uvicorn's
    implementations share.
    """

    admission: _Admission  # set on the class made by guarded_protocol()

    # Attributes of uvicorn's protocol classes this mixin relies on.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer: str | None = None  # set once admitted
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def _reading_head(self) -> bool:
        raise NotImplementedError

    # -------------------------------------------------------- the asyncio protocol

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        peer = self.client[0] if self.client else ""
        reason = self.admission.admit(peer)
        if reason is not None:
            logger.debug("refused a connection: %s", reason)
            self._refuse(503, "too_many_connections", f"too many connections: {reason}")
            return
        self._peer = peer
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._release()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self.timeout_keep_alive_task is not None:
            # The connection was idle after an answer: this is the next request's head.
            self._start_head_timer()
        limit = self.admission.limits.max_head_bytes
        while True:
            if not self._reading_head():
                # A body, and perhaps the start of the next head: that head is counted from
                # the next read on, so it can overshoot the limit by at most one read.
                super().data_received(data)  # type: ignore[misc]
                self._check_head()
                return
            # Feed the parser no more than the head may still grow by.
            room = limit - self._head_bytes
            if room <= 0:
                self._refuse(431, "headers_too_large", f"the request head exceeds {limit} bytes")
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)  # type: ignore[misc]
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # refused by the parser, or upgraded to another protocol
            if self._check_head() and self._head_bytes >= limit:
                self._refuse(431, "headers_too_large", f"the request head exceeds {limit} bytes")
                return
            if not data:
                return

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._check_head()  # a pipelined request may have been parsed just now

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The connection now belongs to the WebSocket protocol, which has its own limits.
        self._stop_head_timer()
        self._release()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    # -------------------------------------------------------- head tracking

    def _check_head(self) -> bool:
        """Whether a head is still being read; ends its timer and count once it is not."""
        if self._reading_head():
            return True
        self._head_complete()
        return False

    def _head_complete(self) -> None:
        self._stop_head_timer()
        self._head_bytes = 0

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.admission.limits.head_timeout, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            logger.debug("closed a connection whose request head was not complete in time")
            self.transport.close()

    # -------------------------------------------------------- refusals

    def _refuse(self, status: int, error_type: str, message: str) -> None:
        self._refused = True
        self._stop_head_timer()
        self._release()
        if not self.transport.is_closing():
            self.transport.write(_refusal(status, error_type, message))
            self.transport.close()

    def _release(self) -> None:
        if self._peer is not None:
            self.admission.release(self._peer)
            self._peer = None


def _httptools_base() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """httptools, whose parser reports where a head begins and ends."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True

        def _reading_head(self) -> bool:
            return self._in_head

        def on_headers_complete(self) -> None:
            # A request without a body completes in the same read, and the parser then
            # reads the next head at once: the count restarts here.
            self._in_head = False
            self._head_complete()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

    return GuardedHttpToolsProtocol


def _h11_base() -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(_Guarded, H11Protocol):
        """h11, whose state machine is idle from a request's end to the next head's end."""

        def _reading_head(self) -> bool:
            return self.conn.their_state is h11.IDLE

    return GuardedH11Protocol


def guarded_protocol(limits: ConnectionLimits, implementation: str) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class (``"httptools"`` or ``"h11"``) that enforces ``limits``.

    Each call makes a class with its own connection counts: give each server its own.
    """
    bases = {"httptools": _httptools_base, "h11": _h11_base}
    if implementation not in bases:
        raise ValueError(f"implementation must be 'httptools' or 'h11', got {implementation!r}")
    base = bases[implementation]()
    return type(base.__name__, (base,), {"admission": _Admission(limits)})
