"""Run a real service in a background thread of the current process.

The trainer listens for env hosts that dial in this way (:mod:`agentgpt.hosts.listen`),
and tests and notebooks run real servers with it: tests talk to a real uvicorn server
over loopback rather than to an in-process ASGI transport, so that they exercise the
same sockets, HTTP parsing and keep-alive behaviour as production.
:func:`serve_in_thread` hides the plumbing: bind a free port first, run uvicorn in a
daemon thread with the production settings, wait until it accepts connections, and shut
it down cleanly (running the app's lifespan exit).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentgpt.service.connections import ConnectionLimits
from agentgpt.service.serving import http_url, listening_socket, uvicorn_config

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout: float = 30.0,
    log_level: str = "warning",
    limits: ConnectionLimits | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    implementation: str | None = None,
) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a background thread; yield its base URL.

    ``port=0`` picks a free port. The yielded URL has no trailing slash, e.g.
    ``"http://127.0.0.1:53817"``. On exit the server stops accepting requests, finishes
    in-flight ones, runs the lifespan's shutdown and the thread is joined. A failed
    start-up (the lifespan raised) raises ``RuntimeError``; one slower than
    ``startup_timeout`` seconds raises ``TimeoutError``. ``limits``, ``tls_cert``,
    ``tls_key`` and ``implementation`` are those of
    :func:`~agentgpt.service.serving.uvicorn_config` (with TLS the URL is ``https://``).
    """
    import uvicorn

    config = uvicorn_config(
        app,
        log_level,
        limits=limits,
        tls_cert=tls_cert,
        tls_key=tls_key,
        implementation=implementation,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    sock = listening_socket(host, port, backlog=128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def _serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed lifespan startup included
            failure.append(exc)

    thread = threading.Thread(target=_serve, name=f"service:{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"the server failed to start: {failure[0] if failure else '?'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise TimeoutError(f"the server did not start within {startup_timeout} s")
        time.sleep(0.01)

    try:
        yield http_url(host, bound_port, tls=tls_cert is not None)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
