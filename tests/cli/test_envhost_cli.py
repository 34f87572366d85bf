"""``agentgpt env-server``: key sources, registrations, and the refusal to run open."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agentgpt.cli import envhost as commands
from agentgpt.cli.envhost import is_loopback, parse_registrations

CLI = [sys.executable, "-m", "agentgpt", "env-server"]


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """The env-server command alone, without the rest of the CLI."""

    commands.register(app)
    return app


def test_loopback_detection():
    for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]:
        assert is_loopback(host), host
    for host in ["0.0.0.0", "::", "192.168.1.10", "example.com"]:
        assert not is_loopback(host), host


def test_registration_parsing():
    assert parse_registrations(["a=pkg.mod:make", " b = x:y "]) == {"a": "pkg.mod:make", "b": "x:y"}
    for bad in ["no-equals", "=pkg:make", "name=pkg.mod"]:
        with pytest.raises(typer.BadParameter):
            parse_registrations([bad])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_refuses_non_loopback_without_a_key(host, monkeypatch):
    monkeypatch.delenv("AGENTGPT_API_KEYS", raising=False)
    result = CliRunner().invoke(_app(), ["env-server", "--host", host, "--port", "0"])
    assert result.exit_code == 2
    assert "Refusing to listen" in result.output
    assert "--insecure" in result.output and "--api-key" in result.output


def test_bad_registration_stops_start_up(monkeypatch):
    monkeypatch.delenv("AGENTGPT_API_KEYS", raising=False)
    result = CliRunner().invoke(
        _app(), ["env-server", "--port", "0", "--register", "x=agentgpt_no_such_module:make"]
    )
    assert result.exit_code == 2
    assert "cannot import module 'agentgpt_no_such_module'" in result.output


class _Server:
    """``agentgpt env-server`` in a subprocess, with its announced URL."""

    def __init__(self, args, env=None):
        full_env = {**os.environ, **(env or {})}
        if env is None:
            full_env.pop("AGENTGPT_API_KEYS", None)
        self.proc = subprocess.Popen(
            CLI + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no URL announced: {line!r} {self.proc.stderr.read()}")
        self.announced = match.group(1)
        port = self.announced.rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> str:
        """Interrupt like Ctrl-C; returns everything the server wrote."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return out + err


def test_insecure_lets_it_listen_everywhere_without_keys():
    server = _Server(["--host", "0.0.0.0", "--port", "0", "--insecure"])
    try:
        assert server.announced.startswith("http://0.0.0.0:")
        made = httpx.post(f"{server.url}/make", json={"env_name": "CartPole-v1"})
        assert made.status_code == 200
    finally:
        output = server.stop()
    assert server.proc.returncode == 0
    assert "No API key configured" in output


def test_keys_from_flags_file_and_environment_and_registrations(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nfile-key-1\n\nfile-key-2\n")
    server = _Server(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--api-key",
            "flag-key",
            "--api-keys-file",
            str(keys_file),
            "--register",
            "short=gymnasium.envs.classic_control.cartpole:CartPoleEnv",
            "--register",
            "rps=pettingzoo.classic.rps_v2:parallel_env",
            "--max-envs-per-key",
            "2",
        ],
        env={"AGENTGPT_API_KEYS": "env-key-1, env-key-2"},
    )
    keys = ["flag-key", "file-key-1", "file-key-2", "env-key-1", "env-key-2"]
    try:
        for key in keys:
            auth = {"Authorization": f"Bearer {key}"}
            made = httpx.post(f"{server.url}/make", json={"env_name": "short"}, headers=auth)
            assert made.status_code == 200, key
            rps = httpx.post(f"{server.url}/make", json={"env_name": "rps"}, headers=auth)
            assert rps.json()["agents"] == ["player_0", "player_1"]
            third = httpx.post(f"{server.url}/make", json={"env_name": "short"}, headers=auth)
            assert third.status_code == 429
        wrong = httpx.post(
            f"{server.url}/make",
            json={"env_name": "short"},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
    finally:
        output = server.stop()
    assert "5 API key(s) configured" in output
    for key in keys:
        assert key not in output
