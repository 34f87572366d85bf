"""Evaluate a served policy: play a run's env with actions from ``agentgpt serve``.

The episodes are those of :func:`agentgpt.agent.evaluate.evaluate` (episode ``i`` resets
with ``seed + i``, several envs side by side), so a served model that behaves like its
checkpoint scores what the checkpoint scores. The envs run in this process, or on an env
server (``env_url``). Each env is one agent of a fresh session on the policy server; an
env whose episode ended is listed in ``terminated_agent_ids`` with its next observation.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import yaml
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from agentgpt.agent.evaluate import DEFAULT_EVAL_ENVS, EvalResult
from agentgpt.core.env_spec import EnvSpec
from agentgpt.core.registration import register_namespace
from agentgpt.serve.client import GPTAPI

__all__ = ["evaluate_served", "evaluate_team_served", "run_env_spec"]


def run_env_spec(run_dir: str | Path) -> EnvSpec:
    """The env a run trained on, read from its ``hyperparameters.yaml`` (no torch)."""
    path = Path(run_dir) / "hyperparameters.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no hyperparameters.yaml in {run_dir}")
    return EnvSpec.from_dict(yaml.safe_load(path.read_text()))


def _make_env(spec: EnvSpec, env_url: str | None, env_api_key: str | None) -> gymnasium.Env:
    if env_url is None:
        register_namespace(spec.env_id)
        return gymnasium.make(spec.env_id, **spec.env_kwargs)
    from agentgpt.remote.env import RemoteEnv

    return RemoteEnv(env_url, spec.env_id, api_key=env_api_key, env_kwargs=spec.env_kwargs)


def evaluate_served(
    run_dir: str | Path,
    policy_url: str,
    *,
    api_key: str | None = None,
    episodes: int = 20,
    seed: int = 0,
    control: float | None = None,
    num_input_states: int | None = None,
    deterministic: bool = True,
    num_envs: int | None = None,
    env_url: str | None = None,
    env_api_key: str | None = None,
    policy: Any = None,
) -> EvalResult:
    """Play ``episodes`` episodes of ``run_dir``'s env with the policy served at
    ``policy_url`` (or the given ``policy``, a :class:`GPTAPI`-like client)."""
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    spec = run_env_spec(run_dir)
    api = policy or GPTAPI(policy_url, api_key, session=f"eval-{uuid.uuid4().hex}")
    n = max(1, min(num_envs or DEFAULT_EVAL_ENVS, episodes))
    envs = [_make_env(spec, env_url, env_api_key) for _ in range(n)]
    try:
        if control is not None:
            api.set_control_value(control)
        if num_input_states is not None:
            api.set_num_input_states(num_input_states)
        returns, lengths = _play(api, envs, episodes, seed, deterministic)
    finally:
        for env in envs:
            env.close()
        if policy is None:
            api.close()
    values = np.asarray(returns, dtype=np.float64)
    return EvalResult(float(values.mean()), float(values.std()), returns, lengths)


def _play(
    api: Any, envs: list[gymnasium.Env], episodes: int, seed: int, deterministic: bool
) -> tuple[list[float], list[int]]:
    n = len(envs)
    obs_space, act_space = api.observation_space, api.action_space
    batched_actions = batch_space(act_space, n)
    ids = [f"env-{i}" for i in range(n)]
    returns = [0.0] * episodes
    lengths = [0] * episodes
    next_episode = 0
    current: list[int | None] = [None] * n
    observations: list[Any] = [None] * n
    ended: list[str] = []

    def start(i: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            current[i] = None
            return
        current[i] = next_episode
        observations[i], _ = envs[i].reset(seed=seed + next_episode)
        next_episode += 1

    for i in range(n):
        start(i)
    while any(e is not None for e in current):
        batch = concatenate(obs_space, observations, create_empty_array(obs_space, n))
        actions = api.select_action(ids, batch, ended, deterministic=deterministic)
        ended = []
        for i, action in enumerate(iterate(batched_actions, actions)):
            episode = current[i]
            if episode is None:
                continue
            obs, reward, terminated, truncated, _ = envs[i].step(action)
            returns[episode] += float(reward)
            lengths[episode] += 1
            observations[i] = obs
            if terminated or truncated:
                start(i)
                ended.append(ids[i])
    return returns, lengths


def evaluate_team_served(
    api: Any, env: Any, episodes: int = 20, *, seed: int = 0, max_steps: int = 100_000
) -> EvalResult:
    """Team returns of a PettingZoo parallel ``env`` played with the served policy, each
    of its agents under its own id (episode ``i`` resets with ``seed + i``)."""
    space = api.observation_space
    returns: list[float] = []
    lengths: list[int] = []
    for episode in range(episodes):
        observations, _ = env.reset(seed=seed + episode)
        agents = list(env.possible_agents)
        ended = list(agents) if episode else []
        total, steps = 0.0, 0
        while env.agents and steps < max_steps:
            live = [a for a in agents if a in observations]
            batch = concatenate(
                space, [observations[a] for a in live], create_empty_array(space, len(live))
            )
            chosen = iterate(
                batch_space(api.action_space, len(live)), api.select_action(live, batch, ended)
            )
            ended = []
            actions = dict(zip(live, chosen, strict=True))
            actions = {a: act for a, act in actions.items() if a in set(env.agents)}
            observations, rewards, _, _, _ = env.step(actions)
            total += float(sum(rewards.values()))
            steps += 1
        returns.append(total)
        lengths.append(steps)
    return EvalResult(float(np.mean(returns)), float(np.std(returns)), returns, lengths)
