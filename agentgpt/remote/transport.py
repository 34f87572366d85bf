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

Proxies come from the environment, as curl and requests read them: ``HTTP_PROXY`` for
``http://`` servers (requests in absolute form), ``HTTPS_PROXY`` for ``https://`` ones
(a ``CONNECT`` tunnel, TLS end to end), ``NO_PROXY`` for the exceptions. Loopback servers
are always reached directly, so env servers started on this machine keep working behind
a corporate proxy.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
import urllib.request
from typing import Any
from urllib.parse import SplitResult, unquote, urlencode, urlsplit

from agentgpt.core.busy_poll import BusyPoll, client_limit_s
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
    "Destination",
    "Transport",
    "check_url",
    "proxy_for",
]

_MEDIA_TYPES = {"msgpack": MSGPACK_MEDIA_TYPE, "json": JSON_MEDIA_TYPE}

# An idle connection is replaced a little before uvicorn's default 5 s keep-alive timeout,
# so a request is never written onto a socket the server is closing.
_KEEPALIVE_EXPIRY = 4.0


#: The most a proxy's answer to ``CONNECT`` may take before its blank line.
_MAX_CONNECT_HEAD = 64 * 1024


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(parts: SplitResult) -> SplitResult | None:
    """The proxy the environment names for the server at ``parts``, or ``None`` to go
    direct: ``HTTP_PROXY`` / ``HTTPS_PROXY`` by the server's scheme (lower-case names
    first), unless ``NO_PROXY`` lists the host or the host is a loopback address.
    Raises ``ValueError`` for a proxy that is not an ``http://`` URL."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    host = parts.hostname or ""
    if not proxy or _is_loopback(host):
        return None
    if urllib.request.proxy_bypass_environment(parts.netloc.rpartition("@")[2], proxies):
        return None
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if proxy_parts.scheme != "http" or not proxy_parts.hostname:
        raise ValueError(
            f"the {parts.scheme.upper()}_PROXY environment variable must be an http:// URL,"
            f" got {proxy_parts.scheme}://{proxy_parts.hostname or ''}"
        )
    return proxy_parts


def _proxy_authorization(proxy: SplitResult) -> str:
    """A ``Proxy-Authorization`` header line for a proxy URL with credentials, else ""."""
    if proxy.username is None:
        return ""
    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return f"Proxy-Authorization: Basic {token}\r\n"


class Destination:
    """Where a transport's connections go: the server, and the proxy on the way if any.

    Built once per transport from its URL and the environment; :meth:`open` gives a
    connected socket (TLS to the server for ``https://``), ready for the first request.
    Through a proxy, ``https://`` (and anything with ``tunnel``, such as a WebSocket)
    goes through a ``CONNECT`` tunnel; plain HTTP is sent to the proxy in absolute form.
    """

    def __init__(
        self, parts: SplitResult, tls_context: ssl.SSLContext | None, tunnel: bool = False
    ) -> None:
        self.address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self.tls = None
        if parts.scheme == "https":
            self.tls = tls_context or ssl.create_default_context()
        #: The ``Host`` header: the URL's authority, never its userinfo.
        self.host = parts.netloc.rpartition("@")[2]
        self.proxy = proxy_for(parts)
        self.proxy_auth = "" if self.proxy is None else _proxy_authorization(self.proxy)
        #: ``CONNECT`` request that opens a tunnel to an https server through the proxy.
        self.connect_request = b""
        if self.proxy is not None and (self.tls is not None or tunnel):
            authority = f"{self.address[0]}:{self.address[1]}"
            if ":" in self.address[0]:
                authority = f"[{self.address[0]}]:{self.address[1]}"
            self.connect_request = (
                f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{self.proxy_auth}\r\n"
            ).encode("latin-1")

    @property
    def plain_proxy(self) -> bool:
        """Whether requests go to an HTTP proxy in absolute form (plain HTTP, proxied)."""
        return self.proxy is not None and not self.connect_request

    def open(self, connect_timeout: float | None, timeout: float | None) -> socket.socket:
        """A socket connected to the server (through the proxy's tunnel for https)."""
        proxy = self.proxy
        address = self.address if proxy is None else (proxy.hostname, proxy.port or 80)
        sock = socket.create_connection(address, timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.connect_request:
                _open_tunnel(sock, self.connect_request)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return sock


def _open_tunnel(sock: socket.socket, connect_request: bytes) -> None:
    """Ask the proxy for a tunnel to the server; raise ``OSError`` unless it answers 2xx."""
    sock.sendall(connect_request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) + len(chunk) > _MAX_CONNECT_HEAD:
            raise OSError("the proxy closed the connection or sent no answer to CONNECT")
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit() or not 200 <= int(parts[1]) < 300:
        raise OSError(f"the proxy refused the tunnel: {status_line[:200]}")
    if not head.endswith(b"\r\n\r\n"):
        raise OSError("the proxy sent data before the tunnel opened")


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
    connection setup. ``tls_context`` verifies ``https://`` servers (default: the system's
    trusted CAs; pass ``ssl.create_default_context(cafile=...)`` for a server with its own
    certificate). ``busy_poll_us``: how long at most to poll for an answer before sleeping
    on the socket, while answers come that fast (:mod:`agentgpt.core.busy_poll`; ``None``:
    ``$AGENTGPT_BUSY_POLL_US``, else 1000; ``0``: never). The connection opens on the
    first request and reopens as needed; it goes through the proxy the environment names
    (see the module's notes). Not thread-safe: one transport per client object.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        busy_poll_us: float | None = None,
    ) -> None:
        if encoding not in _MEDIA_TYPES:
            raise ValueError(f"encoding must be 'msgpack' or 'json', got {encoding!r}")
        parts = check_url(url)
        self.base_url = url.rstrip("/")
        self.encoding = encoding
        self.media_type = _MEDIA_TYPES[encoding]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._destination = Destination(parts, tls_context)
        self._path_prefix = parts.path.rstrip("/")
        host = self._destination.host
        if self._destination.plain_proxy:
            # Plain HTTP through a proxy: absolute-form targets, credentials on every request.
            self._path_prefix = f"http://{host}{self._path_prefix}"
        head = (
            f" HTTP/1.1\r\nHost: {host}\r\nContent-Type: {self.media_type}\r\n"
            f"Accept: {self.media_type}\r\n"
        )
        if self._destination.plain_proxy:
            head += self._destination.proxy_auth
        if api_key:
            head += f"Authorization: Bearer {api_key}\r\n"
        self._head = (head + "Content-Length: ").encode("latin-1")
        self._targets: dict[str, bytes] = {}
        self._sock: socket.socket | None = None
        self._reader: ResponseReader | None = None
        self._last_used = 0.0
        #: Polls briefly for answers before sleeping (:mod:`agentgpt.core.busy_poll`).
        self.busy_poll = BusyPoll(client_limit_s(busy_poll_us))
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
            sock = self._destination.open(self.connect_timeout, self.timeout)
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
            started = time.perf_counter()
            self.busy_poll.spin_socket(sock)
            response = reader.read_response()
            self.busy_poll.learn(time.perf_counter() - started)
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
