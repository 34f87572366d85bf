"""Inline envs: calls of envs the operator marks fast run on the server's event loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.remote import RemoteEnv
from agentgpt.remote.errors import EnvError
from agentgpt.remote.testing import same_values

KEY = "inline-test-key"


class ThreadNoting(gymnasium.Env):
    """Notes the thread each step runs on; action 1 sleeps 20 ms, action 2 raises."""

    threads: list[str] = []

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any):
        ThreadNoting.threads.append(threading.current_thread().name)
        if int(action) == 1:
            time.sleep(0.02)
        if int(action) == 2:
            raise RuntimeError("the simulator crashed")
        return np.zeros(1, dtype=np.float32), 1.0, False, False, {}


@pytest.fixture()
def url():
    ThreadNoting.threads = []
    server = EnvServer(
        api_keys=[KEY],
        register={"noting": ThreadNoting, "noting-too": ThreadNoting},
        inline_envs=["noting", "CartPole-v1"],
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


def test_inline_envs_step_on_the_loop_and_others_in_worker_threads(url) -> None:
    with RemoteEnv(url, "noting", KEY) as inline, RemoteEnv(url, "noting-too", KEY) as other:
        inline.reset()
        other.reset()
        inline.step(0)
        other.step(0)
    loop_thread, worker_thread = ThreadNoting.threads
    assert loop_thread.startswith("service:")  # the thread uvicorn's loop runs in
    assert worker_thread.startswith("env-call")


def test_an_inline_env_steps_exactly_like_a_local_one(url) -> None:
    local = gymnasium.make("CartPole-v1")
    with RemoteEnv(url, "CartPole-v1", KEY) as env:
        assert same_values(env.reset(seed=4), local.reset(seed=4))
        for action in [0, 1, 1, 0, 1] * 4:
            assert same_values(env.step(action), local.step(action))


def test_a_slow_inline_call_sends_the_env_back_to_a_thread(url, caplog) -> None:
    caplog.set_level("WARNING", logger="agentgpt.envhost")
    with RemoteEnv(url, "noting", KEY) as env:
        env.reset()
        env.step(1)  # 20 ms: over the 5 ms limit, once
        env.step(0)
        env.step(1)  # and again, then twice in a row
        env.step(1)
        env.step(0)
    assert [name.split(":")[0].split("-")[0] for name in ThreadNoting.threads] == [
        "service",
        "service",
        "service",
        "service",
        "env",
    ]
    assert "over the inline limit of 5.0 ms for 2 calls in a row" in caplog.text


def test_an_inline_env_that_raises_is_an_env_error_and_the_server_goes_on(url) -> None:
    with RemoteEnv(url, "noting", KEY) as env:
        env.reset()
        with pytest.raises(EnvError) as raised:
            env.step(2)
        assert raised.value.status == 500 and "simulator crashed" in raised.value.message
    with RemoteEnv(url, "CartPole-v1", KEY) as env:
        assert env.reset(seed=0)[0].shape == (4,)


def test_inline_envs_must_be_a_list_of_names() -> None:
    with pytest.raises(TypeError, match="list of env names"):
        EnvServer(inline_envs="CartPole-v1")
