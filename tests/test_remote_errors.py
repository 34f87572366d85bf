"""Every failure reaches the caller as a RemoteEnvError with the server's status and message."""

from __future__ import annotations

import time
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.remote import RemoteEnv, RemoteEnvError, RemoteParallelEnv, RemoteVectorEnv

LANDMARKS = "agentgpt/Landmarks-v0"
KEY = "remote-errors-test-key"
ENCODINGS = ["msgpack", "json"]


class SlowEnv(gymnasium.Env):
    """Each step takes ``delay`` seconds: a stand-in for a heavy simulation."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any):
        time.sleep(self.delay)
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        api_keys=[KEY],
        register={
            "slow": SlowEnv,
            **PETTINGZOO_ENVS,
        },
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unknown_env_is_404_with_suggestions(url, encoding):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(url, "CartPole-v9", KEY, encoding=encoding)
    error = raised.value
    assert error.status == 404
    assert error.error_type == "unknown_env"
    assert "CartPole-v1" in error.message
    assert "CartPole-v1" in str(error)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_action_outside_the_space_is_422_and_the_env_keeps_working(url, encoding):
    with RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding) as env:
        env.reset(seed=0)
        with pytest.raises(RemoteEnvError) as raised:
            env.step(7)
        assert raised.value.status == 422
        assert raised.value.error_type == "invalid_action"
        assert "Discrete(2)" in raised.value.message and "7" in raised.value.message
        obs, reward, *_ = env.step(1)
        assert obs.shape == (4,) and reward == 1.0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_step_after_the_end_in_disabled_mode_is_409(url, encoding):
    with RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding) as env:
        env.reset(seed=0)
        terminated = False
        while not terminated:
            terminated = env.step(1)[2]
        with pytest.raises(RemoteEnvError) as raised:
            env.step(1)
        assert (raised.value.status, raised.value.error_type) == (409, "reset_needed")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("api_key", ["wrong-key", None])
def test_wrong_or_missing_key_is_401(url, api_key, encoding):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(url, "CartPole-v1", api_key, encoding=encoding)
    assert (raised.value.status, raised.value.error_type) == (401, "unauthorized")


def test_invalid_vector_arguments_are_422(url):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteVectorEnv(url, "CartPole-v1", 0, KEY)
    assert (raised.value.status, raised.value.error_type) == (422, "invalid_argument")


def test_server_gone_is_a_connection_error():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        env = RemoteEnv(base_url, "CartPole-v1", KEY)
        env.reset(seed=0)
    with pytest.raises(RemoteEnvError) as raised:
        env.step(0)
    assert raised.value.status is None
    assert raised.value.error_type == "connection_error"
    assert base_url in raised.value.message
    env.close()  # nothing is left to free; closing must not raise
    assert env.closed


def test_no_server_is_a_connection_error():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        pass  # the port is free again once the server stopped
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(base_url, "CartPole-v1", KEY, connect_timeout=2.0)
    assert raised.value.status is None
    assert raised.value.error_type == "connection_error"


def test_read_timeout_is_reported(url):
    with RemoteEnv(url, "slow", KEY, env_kwargs={"delay": 1.0}, timeout=0.2) as env:
        env.reset()
        with pytest.raises(RemoteEnvError) as raised:
            env.step(0)
        assert raised.value.status is None
        assert raised.value.error_type == "timeout"


def test_clients_refuse_the_wrong_kind_of_env_and_free_it():
    # One env per key: a refused env left behind on the server would block the next make.
    server = EnvServer(api_keys=[KEY], register=dict(PETTINGZOO_ENVS), max_envs_per_key=1)
    with run_server_in_thread(server) as base_url:
        for _ in range(2):
            with pytest.raises(TypeError, match="RemoteParallelEnv"):
                RemoteEnv(base_url, LANDMARKS, KEY)
            with pytest.raises(TypeError, match="RemoteEnv"):
                RemoteParallelEnv(base_url, "CartPole-v1", KEY)
        with RemoteEnv(base_url, "CartPole-v1", KEY) as env:
            assert env.reset(seed=0)[0].shape == (4,)


def test_bad_encoding_is_rejected_before_any_request():
    with pytest.raises(ValueError, match="encoding"):
        RemoteEnv("http://127.0.0.1:9", "CartPole-v1", encoding="xml")  # type: ignore[arg-type]


def test_error_keeps_its_fields_when_pickled():
    import pickle

    error = pickle.loads(pickle.dumps(RemoteEnvError(422, "invalid_action", "bad")))
    assert (error.status, error.error_type, error.message) == (422, "invalid_action", "bad")
