"""How the env server is handed to uvicorn: one place for its settings.

Beyond the settings (no access log, no proxy-header rewriting), this module makes each
response leave in one socket write. uvicorn's httptools protocol writes a response's
head and body with two separate ``transport.write`` calls; on loopback every write is a
``send`` system call that wakes the client, so a small step response costs the server two
sends and the client two wake-ups. :class:`_CoalescingTransport` holds a response head
until the body that follows it in the same event-loop turn, then writes both at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["uvicorn_config"]

#: Bodies above this size are written separately rather than copied behind the head.
_COALESCE_LIMIT = 256 * 1024


class _CoalescingTransport:
    """Wraps a transport so a response head waits for its body (at most one loop turn)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: bytes | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            if len(data) <= _COALESCE_LIMIT:
                self._transport.write(pending + data)
            else:
                self._transport.write(pending)
                self._transport.write(data)
        elif data[:5] == b"HTTP/":
            # A response head: its body is written later in this same turn of the loop;
            # the scheduled flush sends the head alone if no body follows.
            self._pending = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._transport.write(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def writelines(self, lines: Any) -> None:
        self.flush()
        self._transport.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _coalescing_protocol() -> type | None:
    """uvicorn's httptools protocol with coalesced writes (``None`` without httptools)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            wrapped = _CoalescingTransport(transport, asyncio.get_running_loop())
            super().connection_made(wrapped)  # type: ignore[arg-type]

    return CoalescingHttpToolsProtocol


def uvicorn_config(app: Any, log_level: str = "info", **overrides: Any) -> Any:
    """The ``uvicorn.Config`` the env server runs with."""
    import uvicorn

    settings: dict[str, Any] = {
        "log_level": log_level,
        "access_log": False,
        # The server never uses client addresses, so proxy headers need no rewriting.
        "proxy_headers": False,
    }
    protocol = _coalescing_protocol()
    if protocol is not None:
        settings["http"] = protocol
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
