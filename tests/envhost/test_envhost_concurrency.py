"""Env calls run off the event loop: one env's calls are serialized, different envs overlap."""

from __future__ import annotations

import threading
import time

import gymnasium
import numpy as np
from wire_client import WireClient

from agentgpt.envhost import EnvServer


class BlockingEnv(gymnasium.Env):
    """``step`` blocks until the test releases it, and records how many calls overlap."""

    observation_space = gymnasium.spaces.Discrete(1000)
    action_space = gymnasium.spaces.Discrete(2)
    entered = threading.Event()
    release = threading.Event()
    lock = threading.Lock()
    active = 0
    max_active = 0

    def reset(self, *, seed=None, options=None):
        self._enter()
        self._leave()
        self.t = 0
        return 0, {}

    def step(self, action):
        self._enter()
        try:
            BlockingEnv.entered.set()
            assert BlockingEnv.release.wait(30), "the test never released the env"
            self.t += 1
            return self.t, 0.0, False, False, {}
        finally:
            self._leave()

    @classmethod
    def _enter(cls):
        with cls.lock:
            cls.active += 1
            cls.max_active = max(cls.max_active, cls.active)

    @classmethod
    def _leave(cls):
        with cls.lock:
            cls.active -= 1


def test_a_blocked_env_does_not_block_others_and_its_calls_are_serialized(env_server):
    server = EnvServer(register={"test/Blocking-v0": BlockingEnv})
    url = env_server(server)
    with WireClient(url) as c:
        slow = c.post("/make", {"env_name": "test/Blocking-v0"}).body["env_key"]
        fast = c.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
        c.post("/reset", {"env_key": slow})
        c.post("/reset", {"env_key": fast, "seed": 0})

    results: dict[str, list] = {"step": [], "reset": []}

    def call(route, body):
        with WireClient(url) as own:
            results[route.strip("/")].append(own.post(route, body))

    first = threading.Thread(target=call, args=("/step", {"env_key": slow, "action": 0}))
    first.start()
    assert BlockingEnv.entered.wait(30)
    # A second call on the same env queues behind the first ...
    second = threading.Thread(target=call, args=("/reset", {"env_key": slow}))
    second.start()
    session = next(s for s in server.table.sessions() if s.key == slow)
    deadline = time.monotonic() + 30
    while session.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.in_flight == 2  # the reset has arrived and waits for the step
    # ... while another env steps freely, and the server answers everything else.
    with WireClient(url, encoding="msgpack") as c:
        rewards = [
            c.post("/step", {"env_key": fast, "action": i % 2}).body["reward"] for i in range(20)
        ]
        assert rewards == [1.0] * 20
        assert c.get("/health").status == 200
        other = c.post("/make", {"env_name": "Pendulum-v1"})
        assert other.status == 200
        observation = c.post("/reset", {"env_key": other.body["env_key"], "seed": 1}).body
        assert np.asarray(observation["observation"]).shape == (3,)
    assert first.is_alive() and results["step"] == []
    assert results["reset"] == []
    BlockingEnv.release.set()
    first.join(30)
    second.join(30)
    assert results["step"][0].status == 200
    assert results["step"][0].body["observation"] == 1
    assert results["reset"][0].status == 200
    assert BlockingEnv.max_active == 1
