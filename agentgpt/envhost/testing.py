"""Run a real env server inside the current process, for tests and notebooks.

Tests of the clients, the trainer fleet and the server itself talk to a real uvicorn server
over loopback, run by :func:`agentgpt.service.threaded.serve_in_thread` with the production
settings. Stopping it closes every env the server still holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from agentgpt.service.testing import serve_in_thread

__all__ = ["run_server_in_thread"]


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
    app = getattr(server, "app", server)
    with serve_in_thread(
        app, host, port, startup_timeout=startup_timeout, log_level=log_level
    ) as url:
        yield url
