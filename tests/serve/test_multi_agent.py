"""A multi-agent run served with its agents' own ids reaches its team return."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgpt import GPTAPI
from agentgpt.agent.team_eval import evaluate_team
from agentgpt.core.factories import load_factory
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.hosts.fleet import FleetOptions, open_fleet
from agentgpt.hosts.local import LocalEnvHosts
from agentgpt.serve.evaluate import evaluate_team_served
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.run import train


@pytest.mark.slow
def test_landmarks_team_reaches_its_return_through_the_server(
    tmp_path: Path, policy_server
) -> None:
    """Two agents sharing one policy, trained as in the trainer's own test, then played
    through the server under their PettingZoo names: the documented bar for a trained
    team is 1.5, and the served team plays exactly the in-process team's episodes."""
    with LocalEnvHosts(1, register=PETTINGZOO_ENVS) as hosts:
        hp = Hyperparameters(
            env_id="agentgpt/Landmarks-v0",
            total_steps=100_000,
            num_envs=8,
            runs_dir=str(tmp_path),
            run_name="landmarks",
            seed=1,
        )
        options = FleetOptions(env_urls=hosts.urls, api_key=hosts.api_key)
        with open_fleet(hp.env_id, options, num_envs=hp.num_envs, seed=hp.seed) as fleet:
            result = train(hp, envs=fleet, show_progress=False)
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
