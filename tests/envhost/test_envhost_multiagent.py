"""PettingZoo envs over the wire: per-agent lists in possible_agents order, None for absent."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.classic import rps_v2
from wire_client import WireClient

from agentgpt import wire
from agentgpt.envhost import EnvServer, run_server_in_thread
from agentgpt.envs import landmarks

ENCODINGS = ["json", "msgpack"]


class _NoPossibleAgents(ParallelEnv):
    """A ParallelEnv that never sets ``possible_agents``."""

    metadata = {"name": "no_possible_agents"}

    def observation_space(self, agent):
        return spaces.Discrete(2)

    def action_space(self, agent):
        return spaces.Discrete(2)


class _EmptyPossibleAgents(_NoPossibleAgents):
    possible_agents: list[str] = []


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        register={
            "rps-parallel": rps_v2.parallel_env,
            "rps-aec": "pettingzoo.classic.rps_v2:env",
            "landmarks": landmarks.parallel_env,
            "landmarks-aec": landmarks.env,
            "no-possible-agents": _NoPossibleAgents,
            "empty-possible-agents": _EmptyPossibleAgents,
        }
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.fixture(params=ENCODINGS)
def client(request, url):
    with WireClient(url, encoding=request.param) as c:
        yield c
        while c.post("/close").status == 200:
            pass


def _ints(values):
    return [None if v is None else int(np.asarray(v)) for v in values]


@pytest.mark.parametrize("name", ["rps-parallel", "rps-aec"])
def test_rock_paper_scissors_matches_local(client, name):
    made = client.post("/make", {"env_name": name, "kwargs": {"max_cycles": 4}})
    assert made.status == 200, made.body
    body = made.body
    assert body["agents"] == ["player_0", "player_1"]
    assert body["num_envs"] == 1
    assert [wire.space_from_wire(s) for s in body["action_space"]] == [
        rps_v2.parallel_env().action_space("player_0")
    ] * 2
    assert len(body["observation_space"]) == 2
    assert client.get("/action_space").body["action_space"] == body["action_space"]

    local = rps_v2.parallel_env(max_cycles=4)
    reset = client.post("/reset", {"seed": 1}).body
    local_obs, _ = local.reset(seed=1)
    assert _ints(reset["observation"]) == [int(local_obs[a]) for a in local.possible_agents]
    assert reset["info"] == [{}, {}]

    moves = [(0, 1), (1, 1), (2, 0), (1, 2)]
    for p0, p1 in moves:
        step = client.post("/step", {"action": [p0, p1]}).body
        obs, rewards, terms, truncs, _ = local.step({"player_0": p0, "player_1": p1})
        order = local.possible_agents
        assert _ints(step["observation"]) == [int(obs[a]) for a in order]
        assert step["reward"] == [rewards[a] for a in order]
        assert step["terminated"] == [terms[a] for a in order]
        assert step["truncated"] == [truncs[a] for a in order]
    assert step["truncated"] == [True, True]
    over = client.post("/step", {"action": [0, 0]})
    assert over.status == 409 and over.body["error"]["type"] == "reset_needed"


def test_multi_agent_actions_are_checked(client):
    client.post("/make", {"env_name": "rps-parallel"})
    client.post("/reset")
    short = client.post("/step", {"action": [0]})
    assert short.status == 422 and short.body["error"]["type"] == "invalid_action"
    assert "player_0" in short.body["error"]["message"]
    missing = client.post("/step", {"action": [0, None]})
    assert missing.status == 422 and "player_1" in missing.body["error"]["message"]
    outside = client.post("/step", {"action": [0, 9]})
    assert outside.status == 422
    assert "Discrete(3)" in outside.body["error"]["message"]
    assert "9" in outside.body["error"]["message"]
    assert client.post("/step", {"action": [0, 2]}).status == 200


def test_multi_agent_envs_cannot_be_vectorized(client):
    answer = client.post("/make_vec", {"env_name": "rps-parallel", "num_envs": 2})
    assert answer.status == 422
    assert answer.body["error"]["type"] == "invalid_argument"
    assert "multi-agent" in answer.body["error"]["message"]
    assert client.post("/make", {"env_name": "rps-parallel"}).status == 200


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("no-possible-agents", "no `possible_agents`"), ("empty-possible-agents", "empty")],
)
def test_env_without_possible_agents_is_refused_by_name(client, name, fragment):
    """Not a server bug (500 internal_error): the env lacks what the protocol needs."""
    answer = client.post("/make", {"env_name": name})
    assert answer.status == 422, answer.body
    assert answer.body["error"]["type"] == "invalid_argument"
    message = answer.body["error"]["message"]
    assert "possible_agents" in message and fragment in message, message
    assert client.post("/make", {"env_name": "rps-parallel"}).status == 200


def test_make_answer_carries_the_env_metadata(client):
    made = client.post("/make", {"env_name": "rps-parallel"})
    assert made.body["metadata"]["name"] == rps_v2.parallel_env().metadata["name"]
    assert made.body["metadata"]["is_parallelizable"] is True


def _play_landmarks(client, local, seed, episodes=1):
    """Step remote and local landmarks envs together; returns the remote step bodies."""
    client.post("/reset", {"seed": seed})
    local.reset(seed=seed)
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(200):
        live = set(local.agents)
        actions = [int(rng.integers(5)) if a in live else None for a in local.possible_agents]
        step = client.post("/step", {"action": actions})
        assert step.status == 200, step.body
        local_result = local.step(
            {
                a: act
                for a, act in zip(local.possible_agents, actions, strict=True)
                if act is not None
            }
        )
        bodies.append((step.body, local_result))
        if not local.agents:
            episodes -= 1
            if episodes == 0:
                break
            client.post("/reset")
            local.reset()
    return bodies


def test_landmarks_absent_agents_are_none(client):
    made = client.post("/make", {"env_name": "landmarks", "kwargs": {"num_agents": 3}}).body
    assert made["agents"] == ["agent_0", "agent_1", "agent_2"]
    local = landmarks.parallel_env(num_agents=3)
    space = local.observation_space("agent_0")
    saw_partial = False
    for seed in range(6):
        for body, (obs, rewards, terms, truncs, infos) in _play_landmarks(client, local, seed):
            for i, agent in enumerate(local.possible_agents):
                if agent in obs:
                    np.testing.assert_array_equal(
                        wire.value_from_wire(space, body["observation"][i]), obs[agent]
                    )
                    assert body["reward"][i] == rewards[agent]
                    assert body["terminated"][i] == terms[agent]
                    assert body["truncated"][i] == truncs[agent]
                    assert body["info"][i] == infos[agent]
                else:
                    assert body["observation"][i] is None
                    assert body["reward"][i] is None
                    assert body["terminated"][i] is None
                    assert body["truncated"][i] is None
                    assert body["info"][i] is None
                    saw_partial = True
    assert saw_partial, "no episode had an agent leave before the others"


def test_landmarks_aec_through_conversion(client):
    made = client.post("/make", {"env_name": "landmarks-aec"}).body
    assert made["agents"] == ["agent_0", "agent_1"]
    reset = client.post("/reset", {"seed": 0}).body
    assert len(reset["observation"]) == 2
    step = client.post("/step", {"action": [0, 0]}).body
    assert len(step["reward"]) == 2 and all(isinstance(r, float) for r in step["reward"])


def test_multi_agent_next_step_autoreset(client):
    client.post(
        "/make",
        {"env_name": "rps-parallel", "kwargs": {"max_cycles": 2}, "autoreset_mode": "next_step"},
    )
    client.post("/reset", {"seed": 0})
    assert client.post("/step", {"action": [0, 1]}).body["truncated"] == [False, False]
    assert client.post("/step", {"action": [0, 1]}).body["truncated"] == [True, True]
    # The resetting step ignores the action but still wants one entry per agent.
    short = client.post("/step", {"action": [0]})
    assert short.status == 422 and short.body["error"]["type"] == "invalid_action"
    restart = client.post("/step", {"action": [None, None]}).body
    assert restart["reward"] == [0.0, 0.0]
    assert restart["terminated"] == [False, False] and restart["truncated"] == [False, False]
    assert _ints(restart["observation"]) == [3, 3]  # rps: "no move yet"
    assert client.post("/step", {"action": [1, 0]}).body["reward"] == [1.0, -1.0]


def test_multi_agent_same_step_autoreset(client):
    client.post(
        "/make",
        {"env_name": "landmarks", "kwargs": {"max_cycles": 3}, "autoreset_mode": "same_step"},
    )
    local = landmarks.parallel_env(max_cycles=3)
    space = local.observation_space("agent_0")
    client.post("/reset", {"seed": 4})
    local.reset(seed=4)
    for _ in range(20):
        actions = [0 if a in local.agents else None for a in local.possible_agents]
        body = client.post("/step", {"action": actions}).body
        obs, rewards, terms, truncs, infos = local.step({a: 0 for a in local.agents})
        if not local.agents:
            break
    # The step that ended the episode: terminal values in final_*, new episode's observation.
    first_obs, _ = local.reset()
    for i, agent in enumerate(local.possible_agents):
        np.testing.assert_array_equal(
            wire.value_from_wire(space, body["observation"][i]), first_obs[agent]
        )
        if agent in obs:
            np.testing.assert_array_equal(
                wire.value_from_wire(space, body["info"][i]["final_observation"]), obs[agent]
            )
            assert body["info"][i]["final_info"] == infos[agent]
            assert body["truncated"][i] is True
    # The env keeps going without a /reset.
    assert client.post("/step", {"action": [0, 0]}).status == 200
