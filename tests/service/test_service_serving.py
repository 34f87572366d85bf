"""The uvicorn settings, listening sockets and exposure rule every service runs with."""

from __future__ import annotations

import importlib.util
import socket

import pytest

from agentgpt.service.connections import ConnectionLimits
from agentgpt.service.serving import (
    InsecureBindError,
    check_exposure,
    http_url,
    is_loopback,
    listening_socket,
    serve,
    uvicorn_config,
)


def test_config_turns_off_access_log_and_proxy_headers():
    config = uvicorn_config(object(), "warning")
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.log_level == "warning"
    expected = "HttpTools" if importlib.util.find_spec("httptools") else "H11"
    assert config.http.__name__ == f"Guarded{expected}Protocol"


def test_config_carries_the_connection_limits():
    limits = ConnectionLimits(keep_alive_timeout=7, max_head_bytes=4096)
    config = uvicorn_config(object(), limits=limits, implementation="h11")
    assert config.timeout_keep_alive == 7
    assert config.h11_max_incomplete_event_size == 4096
    assert config.http.admission.limits is limits
    # Each config counts its own connections.
    assert uvicorn_config(object()).http.admission is not uvicorn_config(object()).http.admission


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


def test_an_https_url():
    assert http_url("127.0.0.1", 8443, tls=True) == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]", "localhost."]
)
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.5", "example.com", "localhost.example.com", ""]
)
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


def test_a_server_without_keys_listens_on_loopback_only():
    check_exposure("127.0.0.1", has_keys=False)
    check_exposure("0.0.0.0", has_keys=True)
    check_exposure("0.0.0.0", has_keys=False, insecure=True)
    with pytest.raises(InsecureBindError, match="0.0.0.0"):
        check_exposure("0.0.0.0", has_keys=False)
    with pytest.raises(InsecureBindError):
        serve(object(), name="test server", host="192.168.1.5", port=0, has_keys=False)


def test_the_env_server_refuses_a_public_address_without_a_key(capsys):
    from agentgpt.envhost.server import EnvServer

    server = EnvServer()
    with pytest.raises(InsecureBindError):
        server.run(host="0.0.0.0", port=0)
    assert "listening" not in capsys.readouterr().out  # refused before binding
