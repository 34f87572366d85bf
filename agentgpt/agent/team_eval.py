"""Evaluate a shared-parameter agent on a PettingZoo parallel env: the team's return.

A multi-agent run trains one policy that every agent uses, each agent acting from its
own context (exactly as during training, where each agent is its own sequence). The
number that matters for a cooperative env is the team return: the sum of every agent's
rewards over an episode. The env may be local or a
:class:`~agentgpt.remote.RemoteParallelEnv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from agentgpt.agent.evaluate import EvalResult, _load, _single_thread

if TYPE_CHECKING:
    from agentgpt.agent.agent import Agent

__all__ = ["evaluate_team"]


def evaluate_team(
    run_dir_or_agent: str | Path | Agent,
    env: Any,
    episodes: int = 20,
    *,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int = 100_000,
) -> EvalResult:
    """Team returns of ``episodes`` episodes of ``env`` (episode ``i`` resets with
    ``seed + i``); ``lengths`` are the episodes' step counts."""
    agent = _load(run_dir_or_agent)
    agents = list(env.possible_agents)
    actor = agent.make_actor(len(agents), deterministic=deterministic, seed=seed)
    space = agent.observation_space
    batched_actions = batch_space(agent.action_space, len(agents))
    returns: list[float] = []
    lengths: list[int] = []
    with _single_thread():
        for episode in range(episodes):
            observations, _ = env.reset(seed=seed + episode)
            actor.reset()
            starts = np.ones(len(agents), bool)
            total, steps = 0.0, 0
            while env.agents and steps < max_steps:
                batch = create_empty_array(space, len(agents))
                rows = [observations.get(a, _zeros_like(space)) for a in agents]
                batch = concatenate(space, rows, batch)
                chosen = iterate(batched_actions, actor.act(batch, starts))
                starts[:] = False
                live = set(env.agents)
                actions = {a: act for a, act in zip(agents, chosen, strict=True) if a in live}
                observations, rewards, _, _, _ = env.step(actions)
                total += float(sum(rewards.values()))
                steps += 1
            returns.append(total)
            lengths.append(steps)
    return EvalResult(float(np.mean(returns)), float(np.std(returns)), returns, lengths)


def _zeros_like(space: Any) -> Any:
    """A placeholder observation for an agent that is gone (its action is not used)."""
    return next(iter(iterate(space, create_empty_array(space, 1))))
