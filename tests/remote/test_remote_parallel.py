"""RemoteParallelEnv: PettingZoo's API test and equality with the local env, agents leaving."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pettingzoo.classic import rps_v2
from pettingzoo.test import parallel_api_test

from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.envs.landmarks import parallel_env as landmarks_env
from agentgpt.remote import RemoteParallelEnv
from agentgpt.remote.testing import same_values

LANDMARKS = "agentgpt/Landmarks-v0"
KEY = "remote-parallel-test-key"
ENCODINGS = ["msgpack", "json"]


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        api_keys=[KEY],
        register={**PETTINGZOO_ENVS, "rps": rps_v2.parallel_env},
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("env_name", "env_kwargs"),
    [(LANDMARKS, {"num_agents": 3}), ("rps", {"max_cycles": 15})],
)
def test_parallel_api_test_passes(url, env_name, env_kwargs, encoding):
    with RemoteParallelEnv(url, env_name, KEY, env_kwargs=env_kwargs, encoding=encoding) as env:
        parallel_api_test(env, num_cycles=100)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_equals_the_local_env_while_agents_leave(url, encoding):
    local = landmarks_env(num_agents=3)
    with RemoteParallelEnv(
        url, LANDMARKS, KEY, env_kwargs={"num_agents": 3}, encoding=encoding
    ) as remote:
        assert remote.possible_agents == local.possible_agents
        for agent in local.possible_agents:
            assert remote.observation_space(agent) == local.observation_space(agent)
            assert remote.action_space(agent) == local.action_space(agent)
        partial_steps = 0
        for episode in range(4):
            assert same_values(remote.reset(seed=episode), local.reset(seed=episode))
            assert remote.agents == local.agents
            rng = np.random.default_rng(episode)
            while local.agents:
                actions = {agent: int(rng.integers(5)) for agent in local.agents}
                remote_step = remote.step(actions)
                local_step = local.step(actions)
                for remote_part, local_part in zip(remote_step, local_step, strict=True):
                    assert same_values(remote_part, local_part), (
                        f"{remote_part!r} != {local_part!r}"
                    )
                assert remote.agents == local.agents
                partial_steps += 0 < len(local.agents) < len(local.possible_agents)
        # Some steps had agents gone while others played on: absent agents were exercised.
        assert partial_steps > 0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_step_autoreset_starts_the_next_episode(url, encoding):
    with RemoteParallelEnv(
        url,
        "rps",
        KEY,
        env_kwargs={"max_cycles": 3},
        autoreset_mode="same_step",
        encoding=encoding,
    ) as env:
        env.reset(seed=0)
        for _ in range(2):
            env.step({agent: 0 for agent in env.agents})
        observations, _, _, truncations, infos = env.step({agent: 0 for agent in env.agents})
        assert all(truncations.values())
        assert env.agents == env.possible_agents  # the next episode is already running
        for agent in env.possible_agents:
            # Both moved "rock" (0) last, so each last saw the other play rock.
            assert infos[agent]["final_observation"] == 0
            assert observations[agent] in env.observation_space(agent)


def test_close_frees_the_server_env(url):
    with RemoteParallelEnv(url, LANDMARKS, KEY) as env:
        env.reset(seed=0)
        key = env.env_key
    env.close()
    answer = httpx.post(
        f"{url}/step",
        json={"env_key": key, "action": [0, 0]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "env_not_found"
