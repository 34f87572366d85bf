"""How a service is handed to uvicorn: the one place for its uvicorn settings and sockets.

Every way of serving (a server's ``run`` through :func:`serve`, and
:func:`~agentgpt.service.threaded.serve_in_thread`) builds its ``uvicorn.Config`` here, so
production and tests run with the same settings and the same
:class:`~agentgpt.service.connections.ConnectionLimits`. Only public ``uvicorn.Config``
options are used (the limits travel as the protocol class ``Config(http=...)`` accepts).
The listening socket is bound before uvicorn starts, so the port (a free one for port 0)
is known and held before the server runs, with no race between picking a port and
binding it. :func:`check_exposure` is the rule every server obeys before binding: no
address other than loopback without an API key, unless the operator says so.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from pathlib import Path
from typing import Any

from agentgpt.service.connections import ConnectionLimits, guarded_protocol
from agentgpt.service.direct_frames import direct_frames_protocol

__all__ = [
    "InsecureBindError",
    "check_exposure",
    "http_url",
    "is_loopback",
    "listening_socket",
    "serve",
    "uvicorn_config",
]


def _http_implementation() -> str:
    """httptools (the faster HTTP parser) when installed, else uvicorn's pure-Python h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def uvicorn_config(
    app: Any,
    log_level: str = "info",
    *,
    limits: ConnectionLimits | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    implementation: str | None = None,
    **overrides: Any,
) -> Any:
    """The ``uvicorn.Config`` a service runs with.

    ``limits``: the connection limits (the defaults when ``None``). ``tls_cert`` and
    ``tls_key``: PEM files to serve HTTPS with; both or neither. ``implementation``:
    ``"httptools"`` or ``"h11"`` (httptools when installed). ``overrides`` are further
    ``uvicorn.Config`` options.
    """
    import uvicorn

    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and its private key")
    limits = limits or ConnectionLimits()
    settings: dict[str, Any] = {
        "log_level": log_level,
        # An access-log line per request would cost more than a whole env step.
        "access_log": False,
        # The server never uses client addresses, so proxy headers need no rewriting.
        "proxy_headers": False,
        "http": guarded_protocol(limits, implementation or _http_implementation()),
        "timeout_keep_alive": limits.keep_alive_timeout,
        # h11 bounds its own buffer too; the guarded protocol refuses first, with 431.
        "h11_max_incomplete_event_size": limits.max_head_bytes,
    }
    frames_protocol = direct_frames_protocol()
    if frames_protocol is not None:  # streams' frames skip the ASGI layers
        settings["ws"] = frames_protocol
    if tls_cert is not None:
        settings["ssl_certfile"] = str(tls_cert)
        settings["ssl_keyfile"] = str(tls_key)
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback, which only local processes can reach."""
    name = host.strip().lower().removesuffix(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


class InsecureBindError(ValueError):
    """A server without API keys was asked to listen where other machines can reach it."""


def check_exposure(host: str, has_keys: bool, insecure: bool = False) -> None:
    """Raises :class:`InsecureBindError` when a server without keys would listen on a
    non-loopback ``host``, unless ``insecure`` says the network is trusted."""
    if has_keys or insecure or is_loopback(host):
        return
    raise InsecureBindError(
        f"refusing to listen on {host} without an API key: anyone who can reach it could"
        " use this server. Configure an API key, or declare the network trusted"
        " (--insecure, insecure=True)."
    )


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


def http_url(host: str, port: int, tls: bool = False) -> str:
    """``http://host:port`` (``https`` with ``tls``) with an IPv6 address in brackets; no
    trailing slash."""
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def serve(
    app: Any,
    *,
    name: str,
    host: str,
    port: int,
    has_keys: bool,
    insecure: bool = False,
    limits: ConnectionLimits | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``app`` until interrupted; prints ``AgentGPT <name> listening on <url>`` once
    the socket is bound.

    Checks :func:`check_exposure` before binding anything.
    """
    import uvicorn

    check_exposure(host, has_keys, insecure)
    config = uvicorn_config(app, log_level, limits=limits, tls_cert=tls_cert, tls_key=tls_key)
    sock = listening_socket(host, port)
    url = http_url(host, sock.getsockname()[1], tls=tls_cert is not None)
    print(f"AgentGPT {name} listening on {url}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown; that is a normal stop
    finally:
        sock.close()
