"""The default transport: HTTP/1.1 over one keep-alive socket, tuned for step latency.

Stepping a remote env is a strict request/response ping-pong, so every microsecond spent
here, on either side, is a microsecond of env time lost. The transport therefore keeps one
persistent HTTP/1.1 connection, builds the constant part of every request once, and writes
each request (head and body together) with a single ``sendall``: general-purpose clients
such as httpx write the head and the body separately, which costs the server an extra
wakeup and parse per request, and spend several times more CPU per request on the client.
Responses are read by :mod:`agentgpt.remote.http11`, a few microseconds each.
Everything the server or the network refuses becomes an exception of the tree in
:mod:`agentgpt.remote.errors`.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from agentgpt.remote.base_transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    BaseTransport,
    Encoding,
)
from agentgpt.remote.errors import RemoteEnvError, remote_error
from agentgpt.remote.http11 import MalformedResponse, ResponseReader
from agentgpt.wire import (
    JSON_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPE,
    WireError,
    decode,
    encode,
    media_type_from_header,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "BaseTransport",
    "Encoding",
    "HttpTransport",
    "Transport",
    "check_url",
]

_MEDIA_TYPES = {"msgpack": MSGPACK_MEDIA_TYPE, "json": JSON_MEDIA_TYPE}

# An idle connection is replaced a little before uvicorn's default 5 s keep-alive timeout,
# so a request is never written onto a socket the server is closing.
_KEEPALIVE_EXPIRY = 4.0


def check_url(url: str) -> SplitResult:
    """The parts of an env server's base URL; ``ValueError`` unless it is
    ``http(s)://host[:port][/prefix]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must look like http://host:port, got {url!r}")
    return parts


class HttpTransport(BaseTransport):
    """Sends protocol requests to one env server over one keep-alive HTTP/1.1 connection.

    ``url`` is the server's base URL (``http://`` or ``https://``, optionally with a path
    prefix when served behind a proxy). ``encoding`` picks the body format of requests and
    answers: ``"msgpack"`` (arrays travel as raw bytes; the fast path) or ``"json"``.
    ``timeout`` bounds every send and every wait for an answer; ``connect_timeout`` the
    connection setup. The connection opens on the first request and reopens as needed. Not
    thread-safe: one transport per client object.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if encoding not in _MEDIA_TYPES:
            raise ValueError(f"encoding must be 'msgpack' or 'json', got {encoding!r}")
        parts = check_url(url)
        self.base_url = url.rstrip("/")
        self.encoding = encoding
        self.media_type = _MEDIA_TYPES[encoding]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._path_prefix = parts.path.rstrip("/")
        host = parts.netloc.rpartition("@")[2]  # never send userinfo in the Host header
        head = (
            f" HTTP/1.1\r\nHost: {host}\r\nContent-Type: {self.media_type}\r\n"
            f"Accept: {self.media_type}\r\n"
        )
        if api_key:
            head += f"Authorization: Bearer {api_key}\r\n"
        self._head = (head + "Content-Length: ").encode("latin-1")
        self._targets: dict[str, bytes] = {}
        self._sock: socket.socket | None = None
        self._reader: ResponseReader | None = None
        self._last_used = 0.0
        self.closed = False

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", self._target(path), encode(body, self.media_type))

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        target = self._target(path)
        if params:
            target += b"?" + urlencode(params).encode("ascii")
        return self._send("GET", target, b"")

    def close(self) -> None:
        self.closed = True
        self._drop()

    def _target(self, path: str) -> bytes:
        target = self._targets.get(path)
        if target is None:
            target = self._targets[path] = (self._path_prefix + path).encode("ascii")
        return target

    def _connection(self) -> tuple[socket.socket, ResponseReader]:
        sock = self._sock
        if sock is not None and time.monotonic() - self._last_used > _KEEPALIVE_EXPIRY:
            self._drop()
            sock = None
        if sock is None or self._reader is None:
            sock = socket.create_connection(self._address, timeout=self.connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
                sock.settimeout(self.timeout)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._reader = ResponseReader(sock)
        return sock, self._reader

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._reader = None

    def _send(self, method: str, target: bytes, content: bytes) -> dict[str, Any]:
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        try:
            sock, reader = self._connection()
            sock.sendall(
                b"%s %s%s%d\r\n\r\n%s"
                % (method.encode(), target, self._head, len(content), content)
            )
            response = reader.read_response()
        except TimeoutError as exc:
            self._drop()
            raise remote_error(
                None,
                "timeout",
                f"{method} {self.base_url}{target.decode()} got no answer in time ({exc})",
            ) from exc
        except OSError as exc:
            self._drop()
            raise remote_error(
                None,
                "connection_error",
                f"cannot reach the env server at {self.base_url} ({type(exc).__name__}: {exc})",
            ) from exc
        except MalformedResponse as exc:
            self._drop()
            raise remote_error(
                None, "bad_response", f"{self.base_url} does not answer in HTTP/1.1 ({exc})"
            ) from exc
        if response.keep_alive:
            self._last_used = time.monotonic()
        else:
            self._drop()
        status = response.status
        content_type = response.headers.get("content-type")
        media_type = media_type_from_header(content_type)
        if 200 <= status < 300:
            if content_type and media_type is None:
                raise remote_error(
                    status, "bad_response", f"the answer is {content_type}, not {self.media_type}"
                )
            return _decode_success(status, response.body, media_type or self.media_type)
        raise _error_from_response(status, response.body, media_type)


#: The name clients construct: the HTTP/1.1 transport is the default one.
Transport = HttpTransport


def _decode_success(status: int, data: bytes, media_type: str) -> dict[str, Any]:
    try:
        answer = decode(data, media_type)
    except WireError as exc:
        raise remote_error(status, "bad_response", f"undecodable answer: {exc}") from exc
    if not isinstance(answer, dict):
        raise remote_error(status, "bad_response", f"expected a map, got {type(answer).__name__}")
    return answer


def _error_from_response(status: int, data: bytes, media_type: str | None) -> RemoteEnvError:
    """Build the error from a non-2xx answer, whatever shape it came in.

    The server answers ``{"error": {"type", "message"}}``; a proxy or load balancer in
    between may answer plain text or HTML, which is kept (shortened) as the message.
    """
    if media_type is not None and data:
        try:
            answer = decode(data, media_type)
        except WireError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            return remote_error(
                status, str(error.get("type", "error")), str(error.get("message", ""))
            )
    text = data.decode("utf-8", errors="replace").strip()
    return remote_error(status, "http_error", text[:500] or f"HTTP {status}")
