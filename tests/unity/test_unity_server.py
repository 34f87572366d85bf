"""Unity envs over a real env server: detection, the PettingZoo client, the fleet's
recovery when a Unity process dies, and the command line. The Unity player is the
stand-in of ``standin.py``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.vector.utils import batch_space
from pettingzoo.test import parallel_api_test
from typer.testing import CliRunner

from agentgpt.cli import app
from agentgpt.cli.envhost import unity_registrations
from agentgpt.envhost import EnvServer
from agentgpt.envhost.unity.launch import UnityLauncher, WorkerIds
from agentgpt.remote import RemoteParallelEnv
from agentgpt.remote.errors import BadRequestError, EnvError, UnavailableError
from agentgpt.remote.fleet import Fleet
from agentgpt.remote.vector import RemoteVectorEnv


def _launcher(build: Path, base_port: int) -> UnityLauncher:
    return UnityLauncher(build, base_port=base_port, timeout_wait=30, worker_ids=WorkerIds())


def test_remote_parallel_env_passes_the_pettingzoo_api_test(
    env_server, standin_build, base_port
) -> None:
    url = env_server(register={"StandIn": _launcher(standin_build(), base_port)})
    env = RemoteParallelEnv(url, "StandIn", env_kwargs={"max_agents": {"Walker?team=0": 5}})
    try:
        assert len(env.possible_agents) == 9
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PettingZoo's notes on agents joining late
            parallel_api_test(env, num_cycles=200)
        # The agent ids the game uses travel in each agent's info.
        _, infos = env.reset()
        assert {infos[a]["agent_id"] for a in env.agents} == {0, 1, 2, 10, 11}
    finally:
        env.close()


def test_a_build_path_is_detected_as_a_unity_env(env_server, standin_build) -> None:
    """Registering the path of a build is enough: the registry and the builder see a
    Unity build and serve it through the Unity adapter."""
    url = env_server(register={"Game": str(standin_build())})
    env = RemoteParallelEnv(url, "Game", autoreset_mode="next_step")
    try:
        observations, _ = env.reset()
        assert set(observations) == {
            "Walker?team=0/0",
            "Walker?team=0/1",
            "Walker?team=0/2",
            "Glider?team=0/0",
            "Glider?team=0/1",
        }
        assert env.metadata["unity"]["port"] >= 5005
    finally:
        env.close()


def test_unity_envs_are_not_vectorized(env_server, standin_build, base_port) -> None:
    url = env_server(register={"StandIn": _launcher(standin_build(), base_port)})
    with pytest.raises(BadRequestError, match="each env gets its own Unity instance"):
        RemoteVectorEnv(url, "StandIn", num_envs=2)


def test_unity_instances_count_against_the_process_limit(
    env_server, standin_build, base_port
) -> None:
    """Each env of a Unity build is a player process: ``--max-processes`` bounds them
    like the processes of async vector envs, and closing one frees its place."""
    url = env_server(register={"StandIn": _launcher(standin_build(), base_port)}, max_processes=1)
    first = RemoteParallelEnv(url, "StandIn")
    try:
        with pytest.raises(UnavailableError, match="runs 1 and its limit is 1") as refused:
            RemoteParallelEnv(url, "StandIn")
        assert refused.value.status == 429
        assert refused.value.error_type == "too_many_processes"
        assert "Each env of a Unity build is a player" in str(refused.value)
    finally:
        first.close()
    again = RemoteParallelEnv(url, "StandIn")
    again.close()


def test_behaviours_with_different_specs_cannot_share_one_policy(
    env_server, standin_build, base_port
) -> None:
    url = env_server(register={"StandIn": _launcher(standin_build(), base_port)})
    with pytest.raises(ValueError, match="must share one observation space") as caught:
        Fleet.from_urls([url], "StandIn", envs_per_host=1)
    assert "Glider?team=0/0" in str(caught.value)


def test_the_fleet_remakes_a_unity_env_whose_process_died(
    env_server, standin_build, base_port
) -> None:
    """The stand-in exits abruptly after 5 steps, as a crashing player would: the step
    fails with ``env_error``, the fleet cuts the env's slots and makes it again, with a
    new Unity instance, and the slots carry on."""
    build = standin_build(scene="coop", die_after=5)
    url = env_server(register={"Coop": _launcher(build, base_port)})
    fleet = Fleet.from_urls(
        [url],
        "Coop",
        envs_per_host=2,
        env_kwargs={"max_agents": 4},
        step_timeout=30.0,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    try:
        assert fleet.num_envs == 16  # 2 envs x 2 behaviours x 4 slots
        rng = np.random.default_rng(0)
        fleet.async_reset(seed=1)
        cut_slots: set[int] = set()
        back: set[int] = set()
        for _ in range(500):
            batch = fleet.recv()
            cut_slots |= set(batch.env_ids[batch.cut].tolist())
            if cut_slots:
                back |= set(batch.env_ids[batch.present & ~batch.cut].tolist()) & cut_slots
            ids = batch.env_ids[~batch.cut]
            if ids.size:
                space = batch_space(fleet.single_action_space, ids.size)
                space.seed(int(rng.integers(1 << 30)))
                fleet.send(space.sample(), ids)
            if cut_slots and back:
                break
        assert cut_slots, "no env failed"
        assert back, "the failed env's slots never came back"
    finally:
        fleet.close()


def test_a_dead_unity_process_is_an_env_error_over_the_wire(
    env_server, standin_build, base_port
) -> None:
    url = env_server(register={"Dying": _launcher(standin_build(die_after=1), base_port)})
    env = RemoteParallelEnv(url, "Dying", autoreset_mode="next_step")
    try:
        env.reset()
        with pytest.raises(EnvError, match="shut down with return code 3"):
            env.step({agent: env.action_space(agent).sample() for agent in env.agents})
    finally:
        env.close()


def test_the_cli_refuses_a_build_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "Nowhere" / "Game.x86_64"
    result = CliRunner().invoke(app, ["env-server", "--unity", str(missing)])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert str(missing) in result.output


def test_cli_unity_names(standin_build) -> None:
    build = standin_build()
    launchers = unity_registrations(
        [str(build), f"Other={build}"], editor=True, base_port=6000, no_graphics=True
    )
    assert list(launchers) == ["StandIn", "Other", "UnityEditor"]
    assert launchers["StandIn"].base_port == 6000 and launchers["StandIn"].no_graphics
    assert launchers["UnityEditor"].editor and launchers["UnityEditor"].base_port == 6000
    with pytest.raises(ValueError, match="given twice"):
        unity_registrations([str(build), str(build)])
    server = EnvServer(register=launchers)
    assert {"StandIn", "Other", "UnityEditor"} <= set(server.registry.registered_names)
