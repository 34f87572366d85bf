"""Choosing how a client's requests travel: HTTP, the streaming session, or whichever works.

Every client (``RemoteEnv``, ``RemoteVectorEnv``, ``RemoteParallelEnv``, the fleet) takes
``transport=``: ``"http"`` (one keep-alive HTTP/1.1 connection), ``"stream"`` (one
WebSocket, :mod:`agentgpt.remote.stream`), ``"auto"`` (the stream when the server offers
it, else HTTP: an older server, or a proxy that does not pass WebSockets, refuses the
upgrade), or a ready :class:`~agentgpt.remote.base_transport.BaseTransport`.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from agentgpt.remote.base_transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    BaseTransport,
    Encoding,
)
from agentgpt.remote.errors import remote_error
from agentgpt.remote.stream import StreamRefused, StreamTransport
from agentgpt.remote.transport import HttpTransport

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "AutoTransport",
    "TransportKind",
    "open_transport",
]

TransportKind = Literal["auto", "http", "stream"]
TRANSPORTS: tuple[str, ...] = ("auto", "http", "stream")
#: What clients use unless told otherwise.
DEFAULT_TRANSPORT: TransportKind = "auto"


def open_transport(
    url: str,
    api_key: str | None = None,
    *,
    kind: TransportKind | str | None = None,
    encoding: Encoding = "msgpack",
    timeout: float | None = DEFAULT_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    tls_context: ssl.SSLContext | None = None,
    busy_poll_us: float | None = None,
) -> BaseTransport:
    """A transport of ``kind`` (``None``: :data:`DEFAULT_TRANSPORT`) to the server at
    ``url``. None connects before its first request."""
    if kind is None:
        kind = DEFAULT_TRANSPORT
    if kind not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {kind!r}")
    options: dict[str, Any] = dict(
        encoding=encoding,
        timeout=timeout,
        connect_timeout=connect_timeout,
        tls_context=tls_context,
        busy_poll_us=busy_poll_us,
    )
    if kind == "http":
        return HttpTransport(url, api_key, **options)
    if kind == "stream":
        return StreamTransport(url, api_key, **options)
    return AutoTransport(url, api_key, **options)


class AutoTransport(BaseTransport):
    """The streaming session when the server offers it, else HTTP.

    The choice is made at the first request that reaches the server: the stream's upgrade
    is tried, and a refusal (:class:`StreamRefused`: an older server, a proxy that does
    not pass WebSockets) settles on HTTP for good. A request that reaches nobody (the
    server is down) settles nothing, so the next one tries again. Arguments are those of
    :class:`~agentgpt.remote.transport.HttpTransport`.
    """

    def __init__(self, url: str, api_key: str | None = None, **options: Any) -> None:
        self._url = url
        self._api_key = api_key
        self._options = options
        self._chosen: BaseTransport | None = None
        # Checks the arguments now, as the other transports do.
        self._stream: StreamTransport | None = StreamTransport(url, api_key, **options)
        self.base_url = self._stream.base_url
        self.encoding = self._stream.encoding
        self.closed = False

    @property
    def chosen(self) -> BaseTransport | None:
        """The transport requests go over, once chosen (``None`` before)."""
        return self._chosen

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._transport().post(path, body)

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._transport().get(path, params)

    def close(self) -> None:
        self.closed = True
        for transport in (self._chosen, self._stream):
            if transport is not None:
                transport.close()

    def _transport(self) -> BaseTransport:
        if self._chosen is not None:
            return self._chosen
        if self.closed or self._stream is None:
            raise remote_error(None, "closed", "this client is closed")
        try:
            self._stream.connect()
        except StreamRefused:
            self._stream.close()
            self._stream = None
            self._chosen = HttpTransport(self._url, self._api_key, **self._options)
        else:
            self._chosen = self._stream
        return self._chosen
