"""How a service is handed to uvicorn: the one place for its uvicorn settings and sockets.

Every way of serving (a server's ``run`` and :func:`~agentgpt.service.testing.serve_in_thread`)
builds its ``uvicorn.Config`` here, so production and tests run with the same settings. Only
public ``uvicorn.Config`` options are used, so any uvicorn release users install keeps working.
The listening socket is bound before uvicorn starts, so the port (a free one for port 0) is
known and held before the server runs, with no race between picking a port and binding it.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

__all__ = ["http_url", "listening_socket", "uvicorn_config"]


def _http_implementation() -> str:
    """httptools (the faster HTTP parser) when installed, else uvicorn's pure-Python h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def uvicorn_config(app: Any, log_level: str = "info", **overrides: Any) -> Any:
    """The ``uvicorn.Config`` a service runs with; ``overrides`` are further options."""
    import uvicorn

    settings: dict[str, Any] = {
        "log_level": log_level,
        # An access-log line per request would cost more than a whole env step.
        "access_log": False,
        # The server never uses client addresses, so proxy headers need no rewriting.
        "proxy_headers": False,
        "http": _http_implementation(),
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``host`` (IPv4 or IPv6) and ``port`` (0: a free one), listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def http_url(host: str, port: int) -> str:
    """``http://host:port`` with an IPv6 address in brackets; no trailing slash."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
