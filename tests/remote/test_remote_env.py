"""RemoteEnv against a real env server: Gymnasium's checker, equality with local envs, lifetime."""

from __future__ import annotations

import gymnasium
import httpx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)
from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.remote import RemoteEnv, RemoteEnvError
from agentgpt.remote.testing import same_values

KEY = "remote-env-test-key"
ENCODINGS = ["msgpack", "json"]


@pytest.fixture(scope="module")
def url():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        yield base_url


def _raw_step(url: str, env_key: str) -> httpx.Response:
    """A step sent without the client, to see what the server itself says about a key."""
    return httpx.post(
        f"{url}/step",
        json={"env_key": env_key, "action": 0},
        headers={"Authorization": f"Bearer {KEY}"},
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "env_name",
    ["CartPole-v1", "Pendulum-v1", "agentgpt/DictObs-v0", "agentgpt/MultiDiscreteTarget-v0"],
)
def test_check_env_passes(url, env_name, encoding):
    with RemoteEnv(url, env_name, KEY, encoding=encoding) as env:
        local = gymnasium.make(env_name)
        assert env.observation_space == local.observation_space
        assert env.action_space == local.action_space
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "env_name", ["CartPole-v1", "agentgpt/DictObs-v0", "agentgpt/MultiDiscreteTarget-v0"]
)
def test_steps_equal_a_local_env(url, env_name, encoding):
    """Same seeds and actions give the same values and types, across episode ends."""
    local = gymnasium.make(env_name)
    actions = local.action_space
    actions.seed(7)
    with RemoteEnv(url, env_name, KEY, encoding=encoding) as env:
        for seed in (100, 101, 102):  # three episodes, each run to its end
            assert same_values(env.reset(seed=seed), local.reset(seed=seed))
            while True:
                action = actions.sample()
                remote_step = env.step(action)
                local_step = local.step(action)
                assert same_values(remote_step[0], local_step[0])
                assert remote_step[1] == float(local_step[1])
                assert remote_step[2:4] == (bool(local_step[2]), bool(local_step[3]))
                assert same_values(remote_step[4], local_step[4])
                if remote_step[2] or remote_step[3]:
                    break


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_make_seed_drives_first_reset(url, encoding):
    local = gymnasium.make("CartPole-v1")
    with RemoteEnv(url, "CartPole-v1", KEY, seed=5, encoding=encoding) as env:
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs, local.reset(seed=5)[0])
        # Later seedless resets continue the seeded stream, as locally.
        np.testing.assert_array_equal(env.reset()[0], local.reset()[0])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_step_autoreset_reports_the_final_observation(url, encoding):
    local = gymnasium.make("CartPole-v1")
    with RemoteEnv(url, "CartPole-v1", KEY, autoreset_mode="same_step", encoding=encoding) as env:
        assert env.autoreset_mode == "same_step"
        env.reset(seed=3)
        local.reset(seed=3)
        ends = 0
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(1)
            local_obs, _, local_terminated, local_truncated, _ = local.step(1)
            assert (terminated, truncated) == (local_terminated, local_truncated)
            if terminated or truncated:
                ends += 1
                final = info["final_observation"]
                assert isinstance(final, np.ndarray) and final.dtype == np.float32
                np.testing.assert_array_equal(final, local_obs)
                # The returned observation already starts the next episode.
                local_obs, _ = local.reset()
                assert not np.array_equal(obs, final)
            np.testing.assert_array_equal(obs, local_obs)
        assert ends >= 3


def test_gymnasium_make_builds_a_remote_env(url):
    env = gymnasium.make("agentgpt/Remote-v0", url=url, env_name="CartPole-v1", api_key=KEY)
    try:
        assert isinstance(env.unwrapped, RemoteEnv)
        assert env.spec is not None and env.spec.id == "agentgpt/Remote-v0"
        local = gymnasium.make("CartPole-v1")
        assert env.observation_space == local.observation_space
        assert env.action_space == local.action_space
        np.testing.assert_array_equal(env.reset(seed=11)[0], local.reset(seed=11)[0])
        for action in [0, 1, 1, 0, 1]:
            np.testing.assert_array_equal(env.step(action)[0], local.step(action)[0])
        # With a spec, the checker also re-makes the env from it and closes it twice.
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_close_frees_the_server_env_and_is_idempotent(url, encoding):
    env = RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding)
    env.reset(seed=0)
    assert _raw_step(url, env.env_key).status_code == 200
    env.close()
    assert env.closed
    answer = _raw_step(url, env.env_key)
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "env_not_found"
    env.close()  # a second close is a no-op
    with pytest.raises(RemoteEnvError) as raised:
        env.step(0)
    assert raised.value.error_type == "closed"


def test_context_manager_closes(url):
    with RemoteEnv(url, "CartPole-v1", KEY) as env:
        key = env.env_key
        env.reset(seed=0)
        assert _raw_step(url, key).status_code == 200
    assert env.closed
    assert _raw_step(url, key).status_code == 404


def test_observations_are_the_callers_to_modify(url):
    with RemoteEnv(url, "CartPole-v1", KEY) as env:
        obs, _ = env.reset(seed=0)
        obs += 1.0  # a local env's observations are writable; so are these
        next_obs = env.step(0)[0]
        assert next_obs.flags.writeable


def test_one_connection_is_kept_alive_and_replaced_when_idle(url, monkeypatch):
    import socket

    from agentgpt.remote import transport as transport_module

    connects = []
    real_connect = socket.create_connection

    def counting_connect(*args, **kwargs):
        connects.append(args[0])
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(transport_module.socket, "create_connection", counting_connect)
    with RemoteEnv(url, "CartPole-v1", KEY, transport="http") as env:
        env.reset(seed=0)
        for _ in range(5):
            env.step(0)
        assert len(connects) == 1  # make, reset and steps share one connection
        # A connection idle for longer than the expiry is replaced, not reused.
        monkeypatch.setattr(transport_module, "_KEEPALIVE_EXPIRY", -1.0)
        env.step(0)
        env.step(0)
        assert len(connects) == 3
