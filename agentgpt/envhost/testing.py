"""Run a real env server inside the current process, for tests and notebooks.

Tests of the clients, the trainer fleet and the server itself talk to a real uvicorn server
over loopback rather than to an in-process ASGI transport, so that they exercise the same
sockets, HTTP parsing and keep-alive behaviour as production. This module hides the
plumbing: bind a free port first (so there is no race between picking a port and binding it),
run uvicorn in a daemon thread, wait until it accepts connections, and shut it down cleanly
(which closes every env the server still holds).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["WireClient", "WireResponse", "run_server_in_thread"]


@contextlib.contextmanager
def run_server_in_thread(
    server: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Serve ``server`` with uvicorn in a background thread; yield its base URL.

    ``server`` is an :class:`~agentgpt.envhost.EnvServer` or any ASGI app. ``port=0`` picks a
    free port. The yielded URL has no trailing slash, e.g. ``"http://127.0.0.1:53817"``.
    On exit the server stops accepting requests, finishes in-flight ones, closes its envs
    and the thread is joined.

    Example::

        with run_server_in_thread(EnvServer(api_keys=["k"])) as url:
            requests.post(f"{url}/make", json={"env_name": "CartPole-v1"}, headers=...)
    """
    import uvicorn

    from agentgpt.envhost.serving import uvicorn_config

    app = getattr(server, "app", server)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]

    config = uvicorn_config(app, log_level, lifespan="on", timeout_graceful_shutdown=5)
    uv_server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def _serve() -> None:
        try:
            uv_server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed lifespan startup included
            failure.append(exc)

    thread = threading.Thread(target=_serve, name=f"env-server:{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not uv_server.started:
        if failure or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"env server failed to start: {failure[0] if failure else '?'}")
        if time.monotonic() > deadline:
            uv_server.should_exit = True
            thread.join(5)
            sock.close()
            raise TimeoutError(f"env server did not start within {startup_timeout} s")
        time.sleep(0.01)

    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        uv_server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class WireResponse:
    """A decoded answer: HTTP status, body (a map) and headers."""

    status: int
    body: Any
    headers: Any
    media_type: str


class WireClient:
    """A deliberately thin protocol client for tests: maps in, decoded maps out.

    Unlike the product clients it never interprets answers (no spaces, no errors raised),
    so tests can look at exactly what the server sent, including error bodies and headers.
    ``encoding`` is ``"json"`` or ``"msgpack"``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        encoding: str = "json",
        timeout: float = 30.0,
    ) -> None:
        import httpx

        from agentgpt import wire

        self.media_type = {"json": wire.JSON_MEDIA_TYPE, "msgpack": wire.MSGPACK_MEDIA_TYPE}[
            encoding
        ]
        headers = {"Content-Type": self.media_type, "Accept": self.media_type}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _answer(self, response: Any) -> WireResponse:
        from agentgpt import wire

        media_type = wire.media_type_from_header(response.headers.get("content-type"))
        body = wire.decode(response.content, media_type) if media_type else response.content
        return WireResponse(response.status_code, body, response.headers, media_type or "")

    def post(
        self,
        route: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> WireResponse:
        """POST ``body`` encoded in this client's encoding (or raw ``content`` as given)."""
        from agentgpt import wire

        if content is None and body is not None:
            content = wire.encode(body, self.media_type)
        return self._answer(self._http.post(route, content=content, headers=headers))

    def get(self, route: str, headers: dict[str, str] | None = None, **params: Any) -> WireResponse:
        return self._answer(self._http.get(route, params=params, headers=headers))

    def request(self, method: str, route: str, **kwargs: Any) -> WireResponse:
        return self._answer(self._http.request(method, route, **kwargs))
