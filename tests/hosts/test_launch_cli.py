"""``agentgpt env-server --public-ip`` / ``--tunnel``: what the user sees, and bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from localtunnel_server import LocaltunnelServer
from typer.testing import CliRunner

from agentgpt.cli import app


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_env_server_behind_a_tunnel_prints_the_train_line_and_closes_on_ctrl_c() -> None:
    with LocaltunnelServer() as tunnel_server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("AGENTGPT_API_KEYS",)}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentgpt",
                "env-server",
                "--tunnel",
                "localtunnel",
                "--tunnel-host",
                tunnel_server.url,
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            [tunnel] = tunnel_server.tunnels.values()
            assert line == (
                f"agentgpt train ENV_ID --env-url http://{tunnel.id}.localhost:{tunnel_server.port}"
            )
            assert not _refused(port)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err
        assert "API key (shown once" in err
        key = err.split("API key (shown once; clients need it):")[1].split()[0]
        assert len(key) >= 40 and err.count(key) == 1 and key not in line
        assert "AGENTGPT_API_KEY" in err
        assert "Stopped; everything opened for the server is closed." in err
        assert _refused(port)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tunnel", "ngrok"], "NGROK_AUTHTOKEN"),
        (["--tunnel", "bore"], "unknown tunnel 'bore'"),
        (["--upnp"], "--upnp goes with --public-ip"),
        (["--public-ip", "--tunnel", "ngrok"], "not both"),
        (["--tunnel-host", "https://lt.example"], "--tunnel-host goes with --tunnel"),
        (["--public-ip", "--api-key", "short"], "too short"),
        (["--public-ip", "--api-key", "k" * 20, "--api-key", "j" * 20], "give one key"),
    ],
)
def test_bad_hosting_input_is_a_clear_message(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.delenv("AGENTGPT_API_KEYS", raising=False)
    result = CliRunner().invoke(app, ["env-server", *args, "--public-ip-service", ""])
    assert result.exit_code == 2
    assert message in result.output


def test_a_port_in_use_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTGPT_API_KEYS", raising=False)
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app, ["env-server", "--public-ip", "--port", str(port), "--public-ip-service", ""]
        )
    assert result.exit_code == 2
    assert f"port {port} is in use" in result.output
