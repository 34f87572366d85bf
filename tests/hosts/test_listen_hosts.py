"""Env hosts that dial in to the trainer (``train --listen``, ``env-server --connect``):
real ``agentgpt env-server`` processes dialling a listener on loopback."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from agentgpt.hosts.fleet import FleetOptions, host_report, open_fleet
from agentgpt.hosts.listen import ListeningHosts
from agentgpt.service.serving import InsecureBindError

KEY = "dial-in-test-key"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses signals")


class Dialers:
    """``agentgpt env-server --connect`` processes, started once the listener's address
    is known; each killed and restarted by name."""

    def __init__(self, hosts: ListeningHosts, names: list[str], key: str = KEY) -> None:
        self.hosts = hosts
        self.names = names
        self.key = key
        self.processes: dict[str, subprocess.Popen] = {}
        self.thread = threading.Thread(target=self._start_all, daemon=True)
        self.thread.start()

    def _start_all(self) -> None:
        while not self.hosts.address:
            time.sleep(0.02)
        for name in self.names:
            self.start(name)

    def start(self, name: str) -> None:
        command = [sys.executable, "-m", "agentgpt", "env-server", "--connect"]
        command += [self.hosts.address, "--name", name, "--log-level", "warning"]
        env = {**os.environ, "AGENTGPT_API_KEYS": self.key}
        self.processes[name] = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def output(self, name: str) -> str:
        process = self.processes[name]
        process.kill()
        out, _ = process.communicate(timeout=10)
        return out.decode(errors="replace")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture()
def dialling() -> Iterator:
    made: list[Dialers] = []

    def start(hosts: ListeningHosts, names: list[str], key: str = KEY) -> Dialers:
        dialers = Dialers(hosts, names, key)
        made.append(dialers)
        return dialers

    yield start
    for dialers in made:
        dialers.close()


def test_hosts_that_dial_in_serve_a_fleet_like_local_envs(dialling, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    options = FleetOptions(listen="127.0.0.1:0", env_hosts=2, api_key=KEY)
    local = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    hosts_seen: list[ListeningHosts] = []
    original_start = ListeningHosts.start

    def start(self: ListeningHosts) -> ListeningHosts:
        hosts_seen.append(self)
        dialling(self, ["sim-a", "sim-b"])
        return original_start(self)

    ListeningHosts.start = start  # type: ignore[method-assign]
    try:
        with open_fleet("CartPole-v1", options, num_envs=4, seed=7) as fleet:
            # Places go in the order hosts dial in.
            assert sorted(s.url for s in fleet.hosts) == ["dialled://sim-a", "dialled://sim-b"]
            obs, _ = fleet.reset(seed=7)
            expected, _ = local.reset(seed=7)
            assert np.allclose(obs, expected)
            for _ in range(30):
                actions = np.array([0, 1, 1, 0])
                got = fleet.step(actions)
                want = local.step(actions)
                assert np.allclose(got[0], want[0]) and np.array_equal(got[1], want[1])
    finally:
        ListeningHosts.start = original_start  # type: ignore[method-assign]
    assert "dialled in (1 of 2)" in caplog.text and "dialled in (2 of 2)" in caplog.text
    assert KEY not in caplog.text


def test_training_goes_on_while_a_host_drops_and_dials_in_again(
    dialling, tmp_path: Path, caplog
) -> None:
    """One of two dialled-in hosts is SIGKILLed mid-run and started again under its name:
    its place is its own again, and the run finishes on both."""
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    hp = Hyperparameters(
        env_id="CartPole-v1", runs_dir=str(tmp_path), run_name="dialled", total_steps=24_576
    )
    hosts = ListeningHosts(2, api_key=KEY)
    dialers = dialling(hosts, ["sim-a", "sim-b"])
    events: list[str] = []

    def chaos() -> None:
        metrics = tmp_path / "dialled" / "metrics.csv"
        while not metrics.exists() or len(metrics.read_text().splitlines()) < 6:
            time.sleep(0.05)
        dialers.kill("sim-b")
        events.append("killed")
        time.sleep(1.0)
        dialers.start("sim-b")
        events.append("restarted")

    with hosts:
        options = FleetOptions(listen="127.0.0.1:0", env_hosts=2, api_key=KEY)
        from agentgpt.remote.fleet import Fleet

        with Fleet.from_urls(
            hosts.urls,
            "CartPole-v1",
            envs_per_host=4,
            api_key=KEY,
            connectors=hosts.connectors,
            seed=hp.seed,
            step_timeout=options.step_timeout,
            fleet_timeout=options.fleet_timeout,
        ) as fleet:
            thread = threading.Thread(target=chaos, daemon=True)
            thread.start()
            result = train(hp, envs=fleet, show_progress=False)
            thread.join(timeout=30)
            report = host_report(fleet.hosts)
    assert events == ["killed", "restarted"]
    assert result.global_step >= 24_576
    assert "env host 'sim-b' dialled in again" in caplog.text
    steady, dropped = sorted(report, key=lambda line: "sim-b" in line)
    assert steady == "env host dialled://sim-a: up throughout"
    assert dropped.startswith("env host dialled://sim-b: down once") and "came back" in dropped


def test_a_host_with_the_wrong_key_is_refused(dialling) -> None:
    hosts = ListeningHosts(1, api_key=KEY, wait_timeout=3.0)
    dialers = dialling(hosts, ["intruder"], key="not-the-key")
    with pytest.raises(TimeoutError, match="0 of 1 env host"):
        hosts.start()
    assert "refused this host (HTTP 401)" in dialers.output("intruder")


def test_listening_beyond_loopback_needs_a_key_and_bad_values_are_refused() -> None:
    with pytest.raises(InsecureBindError):
        ListeningHosts(1, host="0.0.0.0")
    with pytest.raises(ValueError, match="count"):
        ListeningHosts(0)
    with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
        FleetOptions(listen="not-a-port")
    with pytest.raises(ValueError, match="excludes"):
        FleetOptions(listen="9000", env_urls=["http://a:1"])


def test_a_bad_host_name_is_refused_at_the_upgrade() -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    hosts = ListeningHosts(1, api_key=KEY, wait_timeout=30.0)
    starting = threading.Thread(target=hosts.start, daemon=True)
    starting.start()
    while not hosts.address:
        time.sleep(0.02)
    url = hosts.address + "/hosts/connect"
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={**auth, "X-Agentgpt-Host": "bad name!"})
        assert refused.value.response.status_code == 422
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"X-Agentgpt-Host": "fine"})  # no key
        assert refused.value.response.status_code == 401
        with connect(url, additional_headers={**auth, "X-Agentgpt-Host": "fine"}):
            starting.join(timeout=10)
            assert not starting.is_alive() and hosts.urls == ["dialled://fine"]
    finally:
        hosts.close()
