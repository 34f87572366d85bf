"""Public URLs for a server on this machine, through a tunnel provider.

A :class:`Tunnel` forwards a public ``https://`` URL to a port on loopback: :meth:`open`
returns the URL, :meth:`close` takes it down. Two providers:

- :class:`NgrokTunnel`: ngrok through its Python SDK (the ``tunnel`` extra; the agent is
  inside the wheel, nothing is downloaded). Needs an ngrok authtoken (``NGROK_AUTHTOKEN``).
- :class:`LocalTunnel`: a client of the localtunnel protocol in plain Python (no Node.js),
  for ``https://localtunnel.me`` or a self-hosted localtunnel server (``host=``).

The URL is public: the env server behind it still requires its API key.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import select
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_LOCALTUNNEL_HOST",
    "LocalTunnel",
    "NgrokTunnel",
    "Tunnel",
    "TunnelError",
    "make_tunnel",
]

log = logging.getLogger("agentgpt.hosts")

DEFAULT_LOCALTUNNEL_HOST = "https://localtunnel.me"
NGROK_TOKEN_ENV = "NGROK_AUTHTOKEN"

_BUFFER = 65536
_RECONNECT_DELAY = 1.0


class TunnelError(RuntimeError):
    """A tunnel could not be opened (no token, server unreachable, refused)."""


class Tunnel(abc.ABC):
    """A public URL that forwards to ``127.0.0.1:port``."""

    #: Shown in messages ("ngrok", "localtunnel").
    name: str = "tunnel"

    def __init__(self, port: int, local_host: str = "127.0.0.1") -> None:
        self.port = int(port)
        self.local_host = local_host
        self.url: str | None = None

    def check(self) -> None:
        """Raise :class:`TunnelError` now for what would make :meth:`open` fail for sure
        (a missing token or package), before anything is started."""
        return None

    @abc.abstractmethod
    def open(self) -> str:
        """Open the tunnel; return its public URL."""

    @abc.abstractmethod
    def close(self) -> None:
        """Take the tunnel down; safe to call more than once."""

    def __enter__(self) -> Tunnel:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- ngrok


class NgrokTunnel(Tunnel):
    """ngrok through its Python SDK (``pip install 'agentgpt[tunnel]'``).

    ``authtoken``: the account's token; by default ``NGROK_AUTHTOKEN``. It is handed to
    the SDK in memory, never on a command line or in a log. ``domain``: a reserved ngrok
    domain to use instead of a random one.
    """

    name = "ngrok"

    def __init__(
        self,
        port: int,
        *,
        authtoken: str | None = None,
        domain: str | None = None,
        local_host: str = "127.0.0.1",
    ) -> None:
        super().__init__(port, local_host)
        self._authtoken = authtoken if authtoken is not None else os.environ.get(NGROK_TOKEN_ENV)
        self.domain = domain
        self._ngrok: Any = None

    def check(self) -> None:
        if not self._authtoken:
            raise TunnelError(
                f"ngrok needs an authtoken: set {NGROK_TOKEN_ENV} (from"
                " https://dashboard.ngrok.com/get-started/your-authtoken), or use"
                " --tunnel localtunnel"
            )
        try:
            import ngrok  # noqa: F401
        except ImportError:
            raise TunnelError(
                "the ngrok tunnel needs the ngrok package: pip install 'agentgpt[tunnel]'"
            ) from None

    def open(self) -> str:
        self.check()
        import ngrok

        options: dict[str, Any] = {"proto": "http", "authtoken": self._authtoken}
        if self.domain:
            options["domain"] = self.domain
        try:
            listener = ngrok.forward(f"{self.local_host}:{self.port}", **options)
        except Exception as exc:  # the SDK raises ValueError/OSError with the service's words
            raise TunnelError(
                f"ngrok refused the tunnel: {_without(exc, self._authtoken)}"
            ) from None
        self._ngrok = ngrok
        self.url = str(listener.url())
        return self.url

    def close(self) -> None:
        if self._ngrok is None or self.url is None:
            return
        ngrok, url = self._ngrok, self.url
        self._ngrok = None
        try:
            ngrok.disconnect(url)
        except Exception as exc:  # already gone: nothing left to undo
            log.debug("ngrok disconnect of %s: %s", url, exc)


def _without(error: BaseException, secret: str | None) -> str:
    text = str(error)
    return text.replace(secret, "***") if secret else text


# --------------------------------------------------------------------------- localtunnel


class LocalTunnel(Tunnel):
    """A client of the localtunnel protocol, in plain Python.

    ``GET <host>/?new`` (or ``GET <host>/<subdomain>``) asks the server for a tunnel; it
    answers ``{id, port, max_conn_count, url}``. The client keeps ``max_conn_count`` TCP
    connections open to that port; the server sends each public request for ``url`` down
    one of them, and the client pipes it to ``127.0.0.1:port`` and the answer back. A
    connection that ends is replaced, so the tunnel lives until :meth:`close`.

    ``host``: the localtunnel server (``https://localtunnel.me`` by default, or your own).
    ``subdomain``: ask for this id (servers may refuse it).
    """

    name = "localtunnel"

    def __init__(
        self,
        port: int,
        *,
        host: str | None = None,
        subdomain: str | None = None,
        local_host: str = "127.0.0.1",
        timeout: float = 10.0,
        max_connections: int | None = None,
    ) -> None:
        super().__init__(port, local_host)
        self.host = (host or DEFAULT_LOCALTUNNEL_HOST).rstrip("/")
        parts = urlsplit(self.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"tunnel host must look like https://host, got {host!r}")
        self.subdomain = subdomain
        self.timeout = float(timeout)
        self._max_connections = max_connections
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.tunnel_id: str | None = None

    def open(self) -> str:
        if self.url is not None:
            return self.url
        info = self._request_tunnel()
        try:
            remote_port = int(info["port"])
            count = int(info.get("max_conn_count") or 1)
            url = str(info["url"])
            self.tunnel_id = str(info["id"])
        except (KeyError, TypeError, ValueError):
            raise TunnelError(
                f"the localtunnel server at {self.host} gave no tunnel: {info!r}"
            ) from None
        if self._max_connections:
            count = min(count, self._max_connections)
        remote_host = str(info.get("ip") or urlsplit(self.host).hostname)
        self._stop.clear()
        self._connected.clear()
        for index in range(max(1, count)):
            thread = threading.Thread(
                target=self._keep_connection,
                args=(remote_host, remote_port),
                name=f"localtunnel-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        # Usable once the server holds at least one of our connections.
        if not self._connected.wait(self.timeout):
            self.close()
            raise TunnelError(
                f"the localtunnel server at {self.host} gave tunnel {self.tunnel_id} but"
                f" its port {remote_host}:{remote_port} cannot be reached"
            )
        self.url = url
        return url

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(2.0)
        self._threads.clear()
        self.url = None

    # ------------------------------------------------------------------ internals

    def _request_tunnel(self) -> dict[str, Any]:
        path = f"/{self.subdomain}" if self.subdomain else "/?new"
        request = urllib.request.Request(self.host + path, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                body = answer.read(65536)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", errors="replace").strip()
            raise TunnelError(
                f"the localtunnel server at {self.host} refused a tunnel ({exc.code}): {detail}"
            ) from None
        except OSError as exc:
            raise TunnelError(
                f"cannot reach the localtunnel server at {self.host}: {exc}"
            ) from None
        try:
            info = json.loads(body)
        except ValueError:
            raise TunnelError(f"the localtunnel server at {self.host} answered no JSON") from None
        if not isinstance(info, dict):
            raise TunnelError(f"the localtunnel server at {self.host} gave no tunnel: {info!r}")
        if "message" in info and "port" not in info:
            raise TunnelError(f"the localtunnel server at {self.host} refused: {info['message']}")
        return info

    def _track(self, sock: socket.socket | None, add: bool) -> None:
        if sock is None:
            return
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _keep_connection(self, remote_host: str, remote_port: int) -> None:
        """One pooled connection: open it, serve what comes, open it again, until close."""
        while not self._stop.is_set():
            try:
                remote = socket.create_connection((remote_host, remote_port), timeout=self.timeout)
            except OSError as exc:
                log.debug("localtunnel: cannot connect to %s:%d: %s", remote_host, remote_port, exc)
                self._stop.wait(_RECONNECT_DELAY)
                continue
            remote.settimeout(None)
            self._track(remote, True)
            self._connected.set()
            try:
                self._serve(remote)
            finally:
                self._track(remote, False)
                _close(remote)

    def _serve(self, remote: socket.socket) -> None:
        """Wait for the server to send a request down ``remote``, then pipe it locally."""
        local: socket.socket | None = None
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([remote], [], [], 0.5)
                if readable:
                    break
            else:
                return
            try:
                local = socket.create_connection((self.local_host, self.port), timeout=self.timeout)
            except OSError as exc:
                log.warning(
                    "localtunnel: the local server at %s:%d does not answer: %s",
                    self.local_host,
                    self.port,
                    exc,
                )
                return
            local.settimeout(None)
            self._track(local, True)
            _pipe(remote, local, self._stop.is_set)
        finally:
            self._track(local, False)
            if local is not None:
                _close(local)


def _pipe(a: socket.socket, b: socket.socket, stopped: Callable[[], bool]) -> None:
    """Copy bytes both ways until either side ends (or ``stopped()``)."""
    peers = {a: b, b: a}
    while not stopped():
        try:
            readable, _, _ = select.select([a, b], [], [], 0.5)
        except (OSError, ValueError):
            return
        for sock in readable:
            try:
                data = sock.recv(_BUFFER)
            except OSError:
                return
            if not data:
                return
            try:
                peers[sock].sendall(data)
            except OSError:
                return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# --------------------------------------------------------------------------- factory

TUNNELS = ("localtunnel", "ngrok")


def make_tunnel(
    kind: str,
    port: int,
    *,
    host: str | None = None,
    subdomain: str | None = None,
    authtoken: str | None = None,
) -> Tunnel:
    """The tunnel named ``kind`` ("localtunnel" or "ngrok") to ``127.0.0.1:port``.

    ``host``: the localtunnel server; for ngrok, a reserved domain. ``subdomain``: the
    localtunnel id to ask for."""
    if kind == "localtunnel":
        return LocalTunnel(port, host=host, subdomain=subdomain)
    if kind == "ngrok":
        if subdomain:
            raise ValueError("ngrok takes a reserved domain (tunnel host), not a subdomain")
        return NgrokTunnel(port, authtoken=authtoken, domain=host)
    raise ValueError(f"unknown tunnel {kind!r}: choose one of {', '.join(TUNNELS)}")
