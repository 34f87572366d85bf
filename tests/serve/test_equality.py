"""Served actions equal the in-process actor's, step by step, whatever the interleaving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

import agentgpt.envs  # noqa: F401  (registers the toy envs)
from agentgpt import GPTAPI
from agentgpt.agent.checkpoint import load_agent
from tests.serve.conftest import NeverRandom


def _rows(space: gymnasium.Space, values: list[Any]) -> Any:
    return concatenate(space, values, create_empty_array(space, len(values)))


def _one(space: gymnasium.Space, batch: Any) -> Any:
    return next(iter(iterate(batch_space(space, 1), batch)))


def _assert_same(space: gymnasium.Space, served: Any, local: Any, where: str) -> None:
    if isinstance(space, gymnasium.spaces.Dict):
        for key, sub in space.spaces.items():
            _assert_same(sub, served[key], local[key], f"{where}[{key}]")
    elif isinstance(space, gymnasium.spaces.Box):
        np.testing.assert_allclose(served, local, rtol=1e-4, atol=1e-5, err_msg=where)
    else:
        np.testing.assert_array_equal(served, local, err_msg=where)


def _drive(
    run_dir: Path,
    url: str,
    *,
    num_envs: int,
    steps: int,
    k: int | None = None,
    encoding: str = "msgpack",
    seed: int = 0,
    agent: Any = None,
) -> int:
    """Step ``num_envs`` envs through the server, each call acting for a random subset
    of them in a random order, some calls split in two; compare every action with a
    one-env actor per env. Returns how many episodes ended."""
    agent = agent or load_agent(run_dir)
    spec = agent.env
    obs_space, act_space = agent.observation_space, agent.action_space
    envs = [gymnasium.make(spec.env_id, **spec.env_kwargs) for _ in range(num_envs)]
    actors = [agent.make_actor(1, num_input_states=k) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    api = GPTAPI(url, session=f"drive-{seed}-{k}", encoding=encoding)
    if k is not None:
        api.set_num_input_states(k)
    ids: list[str | int] = [f"env-{i}" if i % 2 else i for i in range(num_envs)]
    observations = [env.reset(seed=seed * 100 + i)[0] for i, env in enumerate(envs)]
    starts = np.ones(num_envs, bool)
    ended: set[int] = set()
    episodes = 0
    try:
        for step in range(steps):
            chosen = [int(i) for i in rng.permutation(num_envs)[: rng.integers(1, num_envs + 1)]]
            calls = [chosen]
            if len(chosen) > 2 and rng.random() < 0.3:
                cut = len(chosen) // 2
                calls = [chosen[:cut], chosen[cut:]]
            for call in calls:
                batch = _rows(obs_space, [observations[i] for i in call])
                served = api.select_action(
                    [ids[i] for i in call], batch, [ids[i] for i in call if i in ended]
                )
                for row, (i, action) in enumerate(
                    zip(call, iterate(batch_space(act_space, len(call)), served), strict=True)
                ):
                    local = actors[i].act(_rows(obs_space, [observations[i]]), starts[i : i + 1])
                    _assert_same(act_space, action, _one(act_space, local), f"step {step} env {i}")
                    starts[i] = False
                    ended.discard(i)
                    obs, _, terminated, truncated, _ = envs[i].step(action)
                    if terminated or truncated:
                        obs, _ = envs[i].reset()
                        starts[i] = True
                        ended.add(i)
                        episodes += 1
                    observations[i] = obs
                    del row
    finally:
        api.close()
        for env in envs:
            env.close()
    return episodes


@pytest.mark.parametrize("k", [None, 3])
def test_cartpole_actions_equal_the_actor(cartpole_run, policy_server, k) -> None:
    url, _ = policy_server(cartpole_run)
    episodes = _drive(cartpole_run, url, num_envs=5, steps=200, k=k)
    assert episodes >= 2  # agents ended episodes at different times and started again


@pytest.mark.parametrize("k", [None, 2])
def test_hybrid_actions_equal_the_actor(hybrid_run, policy_server, k) -> None:
    url, _ = policy_server(hybrid_run)
    episodes = _drive(hybrid_run, url, num_envs=4, steps=80, k=k, encoding="json", seed=1)
    assert episodes >= 1


def test_dict_observations_equal_the_actor(dict_obs_run, policy_server) -> None:
    url, _ = policy_server(dict_obs_run)
    _drive(dict_obs_run, url, num_envs=3, steps=40, seed=2)


def test_local_api_equals_the_actor(cartpole_run) -> None:
    """``GPTAPI.local`` acts like the server, without one."""
    agent = load_agent(cartpole_run)
    api = GPTAPI.local(cartpole_run)
    actor = agent.make_actor(2)
    envs = [gymnasium.make("CartPole-v1") for _ in range(2)]
    obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    starts = np.ones(2, bool)
    ended: list[str] = []
    for _ in range(60):
        batch = np.stack(obs)
        served = api.select_action(["a", "b"], batch, ended)
        np.testing.assert_array_equal(served, actor.act(batch, starts))
        starts[:] = False
        ended = []
        for i, env in enumerate(envs):
            obs[i], _, terminated, truncated, _ = env.step(int(served[i]))
            if terminated or truncated:
                obs[i], _ = env.reset()
                starts[i] = True
                ended.append("ab"[i])


def test_control_zero_plays_uniformly(cartpole_run, hybrid_run, policy_server) -> None:
    """At control 0.0 every action is uniform over the action space, whatever the
    observation."""
    url, _ = policy_server(cartpole_run)
    api = GPTAPI(url)
    api.set_control_value(0.0)
    n = 50
    obs = np.tile(np.array([0.1, 0.5, -0.05, -0.3], np.float32), (n, 1))
    actions = np.concatenate(
        [api.select_action(list(range(n)), obs) for _ in range(40)]
    )  # 2000 draws
    share = actions.mean()
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / actions.size), share

    url, _ = policy_server(hybrid_run)
    api = GPTAPI(url)
    api.set_control_value(0.0)
    obs = np.tile(np.array([0.5, 0.5, 0.5, 0.2], np.float32), (n, 1))
    draws = [api.select_action(list(range(n)), obs) for _ in range(40)]
    choice = np.concatenate([d["choice"] for d in draws])
    amount = np.concatenate([d["amount"][:, 0] for d in draws])
    counts = np.bincount(choice, minlength=3) / choice.size
    assert np.all(np.abs(counts - 1 / 3) < 4 * np.sqrt((1 / 3) * (2 / 3) / choice.size)), counts
    # Uniform on [-1, 1]: mean 0, variance 1/3, each quarter of the range equally often.
    assert abs(amount.mean()) < 4 * np.sqrt(1 / 3 / amount.size)
    quarters = np.histogram(amount, bins=4, range=(-1, 1))[0] / amount.size
    assert np.all(np.abs(quarters - 0.25) < 4 * np.sqrt(0.25 * 0.75 / amount.size)), quarters


def test_mid_control_mixes_policy_and_random_actions(hybrid_run, policy_server) -> None:
    """At control 0.5 about half the actions are the policy's (at that control value)
    and the others random; per-agent control values override the session's."""
    agent = load_agent(hybrid_run)
    url, _ = policy_server(hybrid_run)
    api = GPTAPI(url)
    api.set_control_value(0.5, agent_ids=["mixed"])
    assert api.get_control_value("mixed") == 0.5
    assert api.get_control_value() == 1.0
    actor = agent.make_actor(1, control=0.5)
    actor.rng = NeverRandom()  # the actor's own actions: never replaced
    env = gymnasium.make("agentgpt/HybridTarget-v0")
    obs, _ = env.reset(seed=5)
    start = np.ones(1, bool)
    ended: list[str] = []
    policy = random = 0
    for _ in range(300):
        served = api.select_action(["mixed"], obs[None], ended)
        local = actor.act(obs[None], start)
        start[:] = False
        ended = []
        same = np.allclose(served["amount"], local["amount"], atol=1e-5) and np.array_equal(
            served["choice"], local["choice"]
        )
        policy += same
        random += not same
        action = _one(agent.action_space, served)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            start[:] = True
            ended = ["mixed"]
    assert 90 <= policy <= 210 and random >= 90, (policy, random)


def test_changing_k_mid_episode_reads_the_stored_observations(cartpole_run) -> None:
    """Agents keep their last observations up to the maximum K, so after K changes the
    next action is that of an actor of the new K on the whole episode so far."""
    agent = load_agent(cartpole_run)
    api = GPTAPI.local(cartpole_run)
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=11)
    history = []
    for step, k in enumerate([3] * 6 + [16] * 4 + [2] * 4 + [16] * 3):
        if step == 0 or k != api.get_num_input_states():
            api.set_num_input_states(k)
        history.append(obs)
        served = api.select_action(["a"], obs[None])
        actor = agent.make_actor(1, num_input_states=k)
        starts = np.array([True])
        for past in history:
            expected = actor.act(past[None], starts)
            starts[:] = False
        np.testing.assert_array_equal(served, expected, err_msg=f"step {step}, K={k}")
        obs, _, terminated, truncated, _ = env.step(int(served[0]))
        if terminated or truncated:
            break
    assert len(history) > 10  # K went up after the window had slid at K = 3
