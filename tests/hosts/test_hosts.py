"""Host providers: the one interface behind every place env servers run."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgpt import AgentGPT
from agentgpt.hosts import HostProvider, LocalEnvHosts, RunningHosts
from agentgpt.hosts.fleet import API_KEY_ENV, FleetOptions, host_provider, host_report
from agentgpt.remote.fleet import HostStatus


def test_running_hosts_are_a_provider_with_nothing_to_undo() -> None:
    hosts = RunningHosts(["http://a:8000", "http://b:8000"], api_key="k")
    assert isinstance(hosts, HostProvider)
    with hosts as same:
        assert same is hosts
        assert same.urls == ["http://a:8000", "http://b:8000"]
        assert same.api_key == "k"
    hosts.close()  # again: still fine
    with pytest.raises(ValueError, match="at least one"):
        RunningHosts([])


def test_fleet_options_pick_the_provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    running = host_provider(FleetOptions(env_urls=["http://h:1"]))
    assert isinstance(running, RunningHosts) and running.api_key == "from-env"
    explicit = host_provider(FleetOptions(env_urls=["http://h:1"], api_key="given"))
    assert explicit.api_key == "given"
    local = host_provider(FleetOptions(env_hosts=2), log_dir=tmp_path)
    assert isinstance(local, LocalEnvHosts) and len(local.urls) == 2
    local.close()


def test_python_face_trains_on_local_env_hosts(tmp_path: Path) -> None:
    """``AgentGPT.train(..., env_hosts=1)`` starts a server, trains on it, and stops it."""
    result = AgentGPT.train(
        "CartPole-v1",
        env_hosts=1,
        total_steps=4 * 32,
        num_envs=4,
        rollout_steps=32,
        run_name="hosts",
        runs_dir=str(tmp_path),
        show_progress=False,
    )
    assert result.global_step == 128
    # The server's log is kept beside the run.
    log = result.run_dir / "env-hosts" / "host-0.log"
    assert log.exists()
    with pytest.raises(ValueError, match="either envs or env hosts"):
        AgentGPT.train("CartPole-v1", env_hosts=1, envs=object(), runs_dir=str(tmp_path))


def test_the_run_summary_names_each_hosts_downtime_and_a_host_that_never_came_back() -> None:
    steady = HostStatus("http://a:1", True, "i1", range(0, 2), 0)
    flaky = HostStatus("http://b:1", True, "i3", range(2, 4), 2, 12.34, "connection refused")
    lost = HostStatus("http://c:1", False, "i1", range(4, 6), 1, 30.0, "connection refused")
    assert host_report([steady, flaky, lost]) == [
        "env host http://a:1: up throughout",
        "env host http://b:1: down 2 times, 12.3 s in all; came back",
        "env host http://c:1: down once, 30.0 s in all; never came back (last: connection refused)",
    ]
