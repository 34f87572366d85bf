"""Choosing how a client's requests travel: HTTP, the streaming session, or whichever works.

Every client (``RemoteEnv``, ``RemoteVectorEnv``, ``RemoteParallelEnv``, the fleet) takes
``transport=``: ``"http"`` (one keep-alive HTTP/1.1 connection), ``"stream"`` (one
WebSocket, :mod:`agentgpt.remote.stream`), ``"auto"`` (the stream when the server offers
it, else HTTP: an older server, or a proxy that does not pass WebSockets, refuses the
upgrade), or a ready :class:`~agentgpt.remote.base_transport.BaseTransport`.
"""

from __future__ import annotations

import ssl
from typing import Literal

from agentgpt.remote.base_transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    BaseTransport,
    Encoding,
)
from agentgpt.remote.stream import StreamRefused, StreamTransport
from agentgpt.remote.transport import HttpTransport

__all__ = ["DEFAULT_TRANSPORT", "TRANSPORTS", "TransportKind", "open_transport"]

TransportKind = Literal["auto", "http", "stream"]
TRANSPORTS: tuple[str, ...] = ("auto", "http", "stream")
#: What clients use unless told otherwise.
DEFAULT_TRANSPORT: TransportKind = "auto"


def open_transport(
    url: str,
    api_key: str | None = None,
    *,
    kind: TransportKind | str = DEFAULT_TRANSPORT,
    encoding: Encoding = "msgpack",
    timeout: float | None = DEFAULT_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    tls_context: ssl.SSLContext | None = None,
) -> BaseTransport:
    """A transport of ``kind`` to the server at ``url``.

    ``"auto"`` opens the stream at once, to learn whether the server offers it, and
    falls back to HTTP when the upgrade is refused (:class:`StreamRefused`); a wrong key or
    an unreachable server raises as it would over HTTP. ``"http"`` and ``"stream"``
    connect on the first request.
    """
    if kind not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {kind!r}")
    options = dict(
        encoding=encoding,
        timeout=timeout,
        connect_timeout=connect_timeout,
        tls_context=tls_context,
    )
    if kind == "http":
        return HttpTransport(url, api_key, **options)
    stream = StreamTransport(url, api_key, **options)
    if kind == "stream":
        return stream
    try:
        stream.connect()
    except StreamRefused:
        stream.close()
        return HttpTransport(url, api_key, **options)
    except BaseException:
        stream.close()
        raise
    return stream
