"""A small localtunnel-protocol server, run by the tests on loopback.

No localtunnel server installs here from a package registry without downloading a binary,
so the tests bring their own, written from the protocol's documentation (the localtunnel
client and server READMEs):

- a client asks for a tunnel with ``GET /?new`` (or ``GET /<id>`` for a chosen id) and
  gets JSON ``{id, port, max_conn_count, url}``;
- it then opens up to ``max_conn_count`` TCP connections to ``port``;
- a public HTTP request whose ``Host`` is ``<id>.<domain>`` is piped, bytes as they are,
  over one of those connections, and the answer back, until either side closes.

One listening port serves both the control requests and the public requests (told apart
by the Host header), as the real server does.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import secrets
import select
import socket
import threading

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{4,63}[a-z0-9]$")


class _Tunnel:
    def __init__(self, tunnel_id: str) -> None:
        self.id = tunnel_id
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pool: queue.Queue[socket.socket] = queue.Queue()
        self.connected = 0
        self.requests = 0


class LocaltunnelServer:
    """``start()``; clients use :attr:`url` as their tunnel host; ``close()``."""

    def __init__(self, domain: str = "localhost", max_conn_count: int = 4) -> None:
        self.domain = domain
        self.max_conn_count = max_conn_count
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.tunnels: dict[str, _Tunnel] = {}
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocaltunnelServer:
        self._thread(self._accept_public)
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> LocaltunnelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _thread(self, target, *args) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_public(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._keep(conn)
            self._thread(self._handle, conn)

    def _accept_clients(self, tunnel: _Tunnel) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = tunnel.listener.accept()
            except OSError:
                return
            self._keep(conn)
            tunnel.connected += 1
            tunnel.pool.put(conn)

    def _handle(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = conn.recv(65536)
            except OSError:
                conn.close()
                return
            if not chunk:
                conn.close()
                return
            head += chunk
        request_line, _, rest = head.partition(b"\r\n")
        headers = {}
        for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        host = headers.get("host", "").rsplit(":", 1)[0]
        suffix = "." + self.domain
        if host.endswith(suffix):
            self._forward(conn, host[: -len(suffix)], head)
            return
        path = request_line.split(b" ")[1].decode("latin-1")
        self._control(conn, path)

    def _control(self, conn: socket.socket, path: str) -> None:
        if path in ("/?new", "/"):
            tunnel_id = secrets.token_hex(5)
        else:
            tunnel_id = path.strip("/")
            if not _ID.match(tunnel_id):
                self._answer(conn, 403, {"message": "Invalid subdomain."})
                return
        tunnel = _Tunnel(tunnel_id)
        self._keep(tunnel.listener)
        self.tunnels[tunnel_id] = tunnel
        self._thread(self._accept_clients, tunnel)
        self._answer(
            conn,
            200,
            {
                "id": tunnel_id,
                "port": tunnel.port,
                "max_conn_count": self.max_conn_count,
                "url": f"http://{tunnel_id}.{self.domain}:{self.port}",
            },
        )

    def _answer(self, conn: socket.socket, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        conn.close()

    def _forward(self, conn: socket.socket, tunnel_id: str, head: bytes) -> None:
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is None:
            self._answer(conn, 404, {"message": f"no tunnel {tunnel_id}"})
            return
        while True:
            try:
                client = tunnel.pool.get(timeout=10)
            except queue.Empty:
                self._answer(conn, 502, {"message": "no tunnel connection free"})
                return
            try:
                client.sendall(head)
                break
            except OSError:
                client.close()
        tunnel.requests += 1
        socks = {conn: client, client: conn}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(socks), [], [], 0.5)
                done = False
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        done = True
                        break
                    socks[sock].sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
