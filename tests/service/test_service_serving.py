"""The uvicorn settings and listening sockets every service runs with."""

from __future__ import annotations

import importlib.util
import socket

import pytest

from agentgpt.service.serving import http_url, listening_socket, uvicorn_config


def test_config_turns_off_access_log_and_proxy_headers():
    config = uvicorn_config(object(), "warning")
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.log_level == "warning"
    expected = "httptools" if importlib.util.find_spec("httptools") else "h11"
    assert config.http == expected


def test_overrides_take_precedence():
    config = uvicorn_config(object(), "info", http="h11", timeout_graceful_shutdown=3)
    assert config.http == "h11"
    assert config.timeout_graceful_shutdown == 3
    assert config.access_log is False and config.proxy_headers is False


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_listening_socket_takes_a_free_port_and_listens(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        sock = listening_socket(host, 0, backlog=8)
    except OSError as exc:
        pytest.skip(f"cannot bind {host}: {exc}")
    with sock:
        port = sock.getsockname()[1]
        assert port > 0 and sock.family == family
        with socket.create_connection((host, port), timeout=5):
            pass
        url = http_url(host, port)
    assert url == (f"http://[::1]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}")


def test_listening_socket_refuses_a_port_in_use():
    with listening_socket("127.0.0.1", 0) as taken, pytest.raises(OSError):
        listening_socket("127.0.0.1", taken.getsockname()[1])
