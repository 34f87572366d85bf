"""The in-process server helper that every networked test relies on."""

from __future__ import annotations

import gymnasium
import httpx
import pytest
from wire_client import WireClient

from agentgpt.envhost import EnvServer, run_server_in_thread


class CloseCounter(gymnasium.Env):
    closes: list[str] = []
    observation_space = gymnasium.spaces.Discrete(2)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}

    def close(self):
        CloseCounter.closes.append("closed")


def test_server_runs_on_a_free_port_and_stops_cleanly():
    CloseCounter.closes.clear()
    server = EnvServer(register={"counter": CloseCounter})
    with run_server_in_thread(server) as url:
        assert url.startswith("http://127.0.0.1:")
        with WireClient(url, encoding="msgpack") as c:
            for _ in range(3):
                assert c.post("/make", {"env_name": "counter"}).status == 200
        assert httpx.get(f"{url}/health").json()["incarnation"] == server.incarnation
    # Stopping closed every env the server still held, and the port no longer answers.
    assert CloseCounter.closes == ["closed"] * 3
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def test_two_servers_side_by_side_are_independent():
    first, second = EnvServer(), EnvServer()
    with run_server_in_thread(first) as url_a, run_server_in_thread(second.app) as url_b:
        assert url_a != url_b
        with WireClient(url_a) as a, WireClient(url_b) as b:
            key = a.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
            assert b.post("/reset", {"env_key": key}).status == 404
            assert a.post("/reset", {"env_key": key}).status == 200
        assert httpx.get(f"{url_a}/health").json()["incarnation"] == first.incarnation
        assert httpx.get(f"{url_b}/health").json()["incarnation"] == second.incarnation
