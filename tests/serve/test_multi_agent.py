"""A multi-agent run served with its agents' own ids reaches its team return."""

from __future__ import annotations

import pytest

from agentgpt import GPTAPI
from agentgpt.agent.team_eval import evaluate_team
from agentgpt.core.factories import load_factory
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.serve.evaluate import evaluate_team_served


@pytest.mark.slow
def test_landmarks_team_reaches_its_return_through_the_server(
    trained_landmarks_team, policy_server
) -> None:
    """Two agents sharing one policy, trained through an env server by the trainer's
    shared fixture, then played through the inference server under their PettingZoo
    names: the documented bar for a trained team is 1.5, and the served team plays
    exactly the in-process team's episodes."""
    result = trained_landmarks_team
    env = load_factory(PETTINGZOO_ENVS["agentgpt/Landmarks-v0"])()
    url, _ = policy_server(result.run_dir)
    try:
        with GPTAPI(url, session="landmarks") as api:
            served = evaluate_team_served(api, env, episodes=50, seed=1000)
        local = evaluate_team(result.run_dir, env, episodes=50, seed=1000)
    finally:
        env.close()
    assert served.mean >= 1.5, served
    assert served.returns == pytest.approx(local.returns)
