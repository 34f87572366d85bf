"""The seed's three-request example works word for word against a real server."""

from __future__ import annotations

import requests

KEY = "seed-example-key"


def test_three_request_example(env_server):
    url = env_server(api_keys=[KEY])
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    made = requests.post(f"{url}/make", json={"env_name": "CartPole-v1"}, headers=headers)
    assert made.status_code == 200
    made_body = made.json()
    assert made_body["num_envs"] == 1
    assert made_body["agents"] is None
    assert made_body["autoreset_mode"] == "disabled"
    action_space = made_body["action_space"]
    assert (action_space["type"], action_space["n"], action_space["start"]) == ("Discrete", 2, 0)
    assert made_body["observation_space"]["type"] == "Box"
    assert made_body["observation_space"]["shape"] == [4]

    reset = requests.post(f"{url}/reset", headers=headers)
    assert reset.status_code == 200
    observation = reset.json()["observation"]
    assert len(observation) == 4
    assert all(abs(x) <= 0.05 for x in observation)  # CartPole starts within +-0.05

    step = requests.post(f"{url}/step", json={"action": 0}, headers=headers)
    assert step.status_code == 200
    body = step.json()
    assert set(body) == {"observation", "reward", "terminated", "truncated", "info"}
    assert body["reward"] == 1.0
    assert body["terminated"] is False
    assert body["truncated"] is False
    # Action 0 pushes the cart left: its velocity (index 1) decreases.
    assert body["observation"][1] < observation[1]
    # CartPole's Euler step: x' = x + 0.02 * x_dot.
    assert abs(body["observation"][0] - (observation[0] + 0.02 * observation[1])) < 1e-6
