"""Autoreset modes: the server's episodes equal local Gymnasium ones, step for step."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import Autoreset
from wire_client import WireClient

from agentgpt import wire
from agentgpt.envhost import EnvServer, run_server_in_thread

ENCODINGS = ["json", "msgpack"]
OBS_SPACE = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)  # shape/dtype for decoding
STEPS = 120


@pytest.fixture(scope="module")
def url():
    with run_server_in_thread(EnvServer()) as base_url:
        yield base_url


@pytest.fixture(params=ENCODINGS)
def client(request, url):
    with WireClient(url, encoding=request.param) as c:
        yield c
        while c.post("/close").status == 200:
            pass


def _actions(seed, n=STEPS, num_envs=None):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=n if num_envs is None else (n, num_envs))


def _obs(value, space=OBS_SPACE):
    return wire.value_from_wire(space, value)


def _make(client, mode, **extra):
    made = client.post("/make", {"env_name": "CartPole-v1", "autoreset_mode": mode, **extra})
    assert made.status == 200, made.body
    assert made.body["autoreset_mode"] == mode
    return made.body["env_key"]


def test_default_mode_for_make_is_disabled(client):
    made = client.post("/make", {"env_name": "CartPole-v1"})
    assert made.body["autoreset_mode"] == "disabled"


@pytest.mark.parametrize("max_episode_steps", [None, 9])
def test_single_next_step_matches_gymnasium_autoreset(client, max_episode_steps):
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    key = _make(client, "next_step", kwargs=kwargs)
    local = Autoreset(gymnasium.make("CartPole-v1", **kwargs))
    reset = client.post("/reset", {"env_key": key, "seed": 11})
    np.testing.assert_array_equal(_obs(reset.body["observation"]), local.reset(seed=11)[0])
    endings = 0
    for action in _actions(1):
        step = client.post("/step", {"env_key": key, "action": int(action)}).body
        obs, reward, terminated, truncated, info = local.step(int(action))
        np.testing.assert_array_equal(_obs(step["observation"]), obs)
        assert step["reward"] == reward
        assert (step["terminated"], step["truncated"]) == (terminated, truncated)
        assert step["info"] == info
        endings += terminated or truncated
    assert endings >= 3
    if max_episode_steps is not None:
        assert endings >= STEPS // (max_episode_steps + 1) - 1


def test_single_same_step_matches_pre_1_0_convention(client):
    key = _make(client, "same_step")
    # Gymnasium's same-step vector autoreset over one env is the reference.
    local = SyncVectorEnv(
        [lambda: gymnasium.make("CartPole-v1")], autoreset_mode=AutoresetMode.SAME_STEP
    )
    reset = client.post("/reset", {"env_key": key, "seed": 5})
    np.testing.assert_array_equal(_obs(reset.body["observation"]), local.reset(seed=5)[0][0])
    endings = 0
    for action in _actions(2):
        step = client.post("/step", {"env_key": key, "action": int(action)}).body
        obs, reward, terminated, truncated, info = local.step(np.array([action]))
        np.testing.assert_array_equal(_obs(step["observation"]), obs[0])
        assert step["reward"] == reward[0]
        assert (step["terminated"], step["truncated"]) == (terminated[0], truncated[0])
        if terminated[0] or truncated[0]:
            endings += 1
            assert set(step["info"]) == {"final_observation", "final_info"}
            np.testing.assert_array_equal(
                _obs(step["info"]["final_observation"]), info["final_obs"][0]
            )
            assert step["info"]["final_info"] == {}
        else:
            assert step["info"] == {}
    assert endings >= 3


def test_single_disabled_needs_reset_like_a_plain_env(client):
    key = _make(client, "disabled")
    local = gymnasium.make("CartPole-v1")
    client.post("/reset", {"env_key": key, "seed": 9})
    local.reset(seed=9)
    endings = 0
    for action in _actions(3):
        step = client.post("/step", {"env_key": key, "action": int(action)}).body
        obs, reward, terminated, truncated, _ = local.step(int(action))
        np.testing.assert_array_equal(_obs(step["observation"]), obs)
        assert step["reward"] == reward
        if terminated or truncated:
            endings += 1
            refused = client.post("/step", {"env_key": key, "action": 0})
            assert refused.status == 409
            assert refused.body["error"]["type"] == "reset_needed"
            again = client.post("/reset", {"env_key": key}).body
            np.testing.assert_array_equal(_obs(again["observation"]), local.reset()[0])
    assert endings >= 3


MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_vector_modes_match_local_make_vec(client, mode):
    num_envs = 3
    made = client.post(
        "/make_vec", {"env_name": "CartPole-v1", "num_envs": num_envs, "autoreset_mode": mode}
    ).body
    assert made["autoreset_mode"] == mode and made["num_envs"] == num_envs
    key = made["env_key"]
    local = gymnasium.make_vec(
        "CartPole-v1",
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": MODES[mode]},
    )
    batched = local.observation_space
    reset = client.post("/reset", {"env_key": key, "seed": 21}).body
    np.testing.assert_array_equal(_obs(reset["observation"], batched), local.reset(seed=21)[0])
    endings = 0
    for actions in _actions(4, num_envs=num_envs):
        step = client.post("/step", {"env_key": key, "action": actions.tolist()})
        assert step.status == 200, step.body
        body = step.body
        obs, reward, terminated, truncated, info = local.step(actions)
        np.testing.assert_array_equal(_obs(body["observation"], batched), obs)
        np.testing.assert_array_equal(np.asarray(body["reward"], np.float64), reward)
        np.testing.assert_array_equal(np.asarray(body["terminated"], bool), terminated)
        np.testing.assert_array_equal(np.asarray(body["truncated"], bool), truncated)
        assert "final_obs" not in body["info"]
        ended = terminated | truncated
        endings += int(ended.sum())
        if mode == "same_step" and ended.any():
            mask = np.asarray(body["info"]["_final_observation"], bool)
            np.testing.assert_array_equal(mask, info["_final_obs"])
            for i in np.flatnonzero(mask):
                np.testing.assert_array_equal(
                    _obs(body["info"]["final_observation"][i]), info["final_obs"][i]
                )
            assert "final_info" in body["info"] and "_final_info" in body["info"]
        else:
            assert "final_observation" not in body["info"]
        if mode == "disabled" and ended.any():
            refused = client.post("/step", {"env_key": key, "action": actions.tolist()})
            assert refused.status == 409
            assert refused.body["error"]["type"] == "reset_needed"
            reset_mask = ended.tolist()
            again = client.post(
                "/reset", {"env_key": key, "options": {"reset_mask": reset_mask}}
            ).body
            local_obs, _ = local.reset(options={"reset_mask": ended})
            np.testing.assert_array_equal(_obs(again["observation"], batched), local_obs)
    assert endings >= 3


def test_vector_default_mode_is_next_step(client):
    made = client.post("/make_vec", {"env_name": "CartPole-v1", "num_envs": 2})
    assert made.body["autoreset_mode"] == "next_step"


def test_async_vector_env(client):
    made = client.post(
        "/make_vec",
        {"env_name": "CartPole-v1", "num_envs": 2, "vectorization_mode": "async", "seed": 3},
    )
    assert made.status == 200, made.body
    local = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    reset = client.post("/reset").body
    np.testing.assert_array_equal(
        _obs(reset["observation"], local.observation_space), local.reset(seed=3)[0]
    )
    for actions in _actions(6, n=10, num_envs=2):
        body = client.post("/step", {"action": actions.tolist()}).body
        obs, reward, *_ = local.step(actions)
        np.testing.assert_array_equal(_obs(body["observation"], local.observation_space), obs)
        np.testing.assert_array_equal(np.asarray(body["reward"], np.float64), reward)
