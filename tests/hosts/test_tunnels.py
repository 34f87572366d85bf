"""Serving envs behind a public URL: the localtunnel client end to end, ngrok's wiring.

The localtunnel tests run a real tunnel over loopback: a localtunnel-protocol server from
this test suite (``localtunnel_server.py``, written from the protocol's documentation,
since no localtunnel server installs from a registry without a binary download), the
package's own client, and a real env server behind it. Public tunnel URLs look like
``http://<id>.localhost:PORT``; the tests resolve ``*.localhost`` to loopback themselves,
as systemd-resolved and browsers do.
"""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path

import pytest
from localtunnel_server import LocaltunnelServer
from typer.testing import CliRunner

from agentgpt.hosts.launch import launch_on_local_with_url
from agentgpt.hosts.tunnels import LocalTunnel, NgrokTunnel, TunnelError, make_tunnel
from agentgpt.remote import RemoteEnv
from agentgpt.remote.errors import RemoteEnvError


@pytest.fixture
def localhost_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve ``<anything>.localhost`` to 127.0.0.1 in this process."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def tunnel_server():
    with LocaltunnelServer() as server:
        yield server


def test_envs_answer_through_a_localtunnel_and_only_with_the_key(
    tunnel_server: LocaltunnelServer, localhost_names: None
) -> None:
    hosts = launch_on_local_with_url(
        "CartPole-v1", tunnel="localtunnel", tunnel_host=tunnel_server.url
    )
    try:
        [url] = hosts.urls
        assert url.startswith("http://") and url.endswith(f".localhost:{tunnel_server.port}")
        assert hosts.key_generated and len(hosts.api_key) >= 40
        assert hosts.train_command() == f"agentgpt train CartPole-v1 --env-url {url}"
        assert hosts.api_key not in hosts.train_command()
        env = RemoteEnv(url, "CartPole-v1", api_key=hosts.api_key)
        obs, _ = env.reset(seed=1)
        assert obs.shape == (4,)
        env.step(env.action_space.sample())
        env.close()
        # It went through the tunnel server (one keep-alive connection carries every call).
        [tunnel] = tunnel_server.tunnels.values()
        assert tunnel.connected >= 1 and tunnel.requests >= 1

        with pytest.raises(RemoteEnvError, match="(?i)key|auth"):
            RemoteEnv(url, "CartPole-v1", api_key="wrong-key-wrong-key").reset()
    finally:
        hosts.close()
    # Everything it opened is gone: the local server and the tunnel's connections.
    local = hosts.details["local_url"]
    port = int(local.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_agentgpt_train_trains_through_a_tunnel_url(
    tunnel_server: LocaltunnelServer,
    localhost_names: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentgpt.cli import app

    hosts = launch_on_local_with_url(
        "CartPole-v1", tunnel="localtunnel", tunnel_host=tunnel_server.url
    )
    try:
        monkeypatch.setenv("AGENTGPT_API_KEY", hosts.api_key)
        command = hosts.train_command().split()[1:]
        result = CliRunner().invoke(
            app,
            [
                *command,
                "--total-steps",
                "64",
                "--num-envs",
                "2",
                "--rollout-steps",
                "32",
                "--runs-dir",
                str(tmp_path),
                "--run-name",
                "tunnel",
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "Trained 64 steps" in result.output
    finally:
        hosts.close()
    [tunnel] = tunnel_server.tunnels.values()
    assert tunnel.requests >= 1  # the steps went through the tunnel


def test_a_tunnel_server_that_is_not_there_is_a_clear_error_and_nothing_keeps_running() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with pytest.raises(TunnelError, match="cannot reach the localtunnel server"):
        launch_on_local_with_url(
            "CartPole-v1", tunnel="localtunnel", tunnel_host=f"http://127.0.0.1:{dead_port}"
        )


def test_a_refused_subdomain_is_reported(tunnel_server: LocaltunnelServer) -> None:
    tunnel = LocalTunnel(1, host=tunnel_server.url, subdomain="NO")
    with pytest.raises(TunnelError, match="refused a tunnel .*Invalid subdomain"):
        tunnel.open()


# ------------------------------------------------------------------------------- ngrok
# ngrok's service is proprietary and needs an account, so these tests replace the SDK's
# calls (ngrok.forward, ngrok.disconnect) with a stand-in module and check the wiring.


class _FakeNgrok(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("ngrok")
        self.forwarded: list[tuple[str, dict]] = []
        self.disconnected: list[str] = []

    def forward(self, addr, **options):
        self.forwarded.append((addr, options))
        url = "https://abc123.ngrok-free.app"
        return types.SimpleNamespace(url=lambda: url)

    def disconnect(self, url=None):
        self.disconnected.append(url)


def test_ngrok_forwards_the_local_port_with_the_token_and_disconnects_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeNgrok()
    monkeypatch.setitem(sys.modules, "ngrok", fake)
    monkeypatch.setenv("NGROK_AUTHTOKEN", "token-from-env")
    hosts = launch_on_local_with_url("CartPole-v1", tunnel="ngrok")
    try:
        assert hosts.urls == ["https://abc123.ngrok-free.app"]
        [(addr, options)] = fake.forwarded
        port = int(hosts.details["local_url"].rsplit(":", 1)[1])
        assert addr == f"127.0.0.1:{port}"
        assert options == {"proto": "http", "authtoken": "token-from-env"}
        # The server behind it is real and requires the key.
        env = RemoteEnv(hosts.details["local_url"], "CartPole-v1", api_key=hosts.api_key)
        env.reset(seed=0)
        env.close()
        assert fake.disconnected == []
    finally:
        hosts.close()
    assert fake.disconnected == ["https://abc123.ngrok-free.app"]
    hosts.close()  # again: nothing more to undo
    assert fake.disconnected == ["https://abc123.ngrok-free.app"]


def test_ngrok_without_a_token_stops_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeNgrok()
    monkeypatch.setitem(sys.modules, "ngrok", fake)
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    started = []
    monkeypatch.setattr(
        "agentgpt.hosts.served.ServedEnvServer.start", lambda self: started.append(self)
    )
    with pytest.raises(TunnelError, match="NGROK_AUTHTOKEN"):
        launch_on_local_with_url("CartPole-v1", tunnel="ngrok")
    assert started == [] and fake.forwarded == []


def test_ngrok_errors_never_show_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNgrok()

    def refuse(addr, **options):
        raise ValueError(f"authentication failed: token {options['authtoken']} is invalid")

    fake.forward = refuse
    monkeypatch.setitem(sys.modules, "ngrok", fake)
    tunnel = NgrokTunnel(8000, authtoken="s3cret-token")
    with pytest.raises(TunnelError) as caught:
        tunnel.open()
    assert "s3cret-token" not in str(caught.value)
    assert "authentication failed" in str(caught.value)


def test_make_tunnel_names_the_providers() -> None:
    assert isinstance(make_tunnel("localtunnel", 1, host="https://lt.example"), LocalTunnel)
    assert isinstance(make_tunnel("ngrok", 1, authtoken="t"), NgrokTunnel)
    with pytest.raises(ValueError, match="unknown tunnel 'bore'"):
        make_tunnel("bore", 1)
