"""The shipped toy envs: API conformance and the returns their docstrings promise."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test

import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)
from agentgpt.envs import GYMNASIUM_ENVS, PETTINGZOO_ENVS, register_envs
from agentgpt.envs.hybrid_target import random_return as hybrid_random_return
from agentgpt.envs.landmarks import LandmarksEnv, greedy_actions
from agentgpt.envs.landmarks import env as landmarks_aec
from agentgpt.envs.landmarks import parallel_env as landmarks_parallel
from agentgpt.envs.multidiscrete_target import random_return as md_random_return

TOY_IDS = [
    "agentgpt/MemoryCue-v0",
    "agentgpt/MultiDiscreteTarget-v0",
    "agentgpt/HybridTarget-v0",
    "agentgpt/DictObs-v0",
]


def _episode_return(env: gymnasium.Env, policy, seed: int) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        assert env.observation_space.contains(obs)
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("env_id", TOY_IDS)
def test_gymnasium_envs_pass_check_env(env_id: str) -> None:
    env = gymnasium.make(env_id)
    check_env(env.unwrapped)
    env.close()


def test_register_envs_is_idempotent_and_string_only() -> None:
    register_envs()
    register_envs()
    for env_id, spec in GYMNASIUM_ENVS.items():
        assert env_id in gymnasium.registry
        assert isinstance(spec["entry_point"], str)
    assert all(":" in factory for factory in PETTINGZOO_ENVS.values())


# --- MemoryCue -------------------------------------------------------------------------


@pytest.mark.parametrize(("num_cues", "delay"), [(2, 4), (3, 0), (4, 7)])
def test_memory_cue_recall_is_optimal_and_memoryless_is_chance(num_cues: int, delay: int) -> None:
    env = gymnasium.make("agentgpt/MemoryCue-v0", num_cues=num_cues, delay=delay)
    remembering, constant = [], []
    query_observations = set()
    for seed in range(600):
        obs, _ = env.reset(seed=seed)
        cue = int(np.argmax(obs[:num_cues]))
        assert obs[:num_cues].sum() == 1.0 and obs[-1] == 0.0
        for _ in range(delay):
            obs, reward, terminated, _, _ = env.step(0)
            assert not obs.any() and reward == 0.0 and not terminated
        obs, reward, terminated, _, _ = env.step(0)
        assert obs[-1] == 1.0 and not obs[:num_cues].any() and not terminated
        query_observations.add(obs.tobytes())
        _, reward, terminated, truncated, info = env.step(cue)
        assert terminated and not truncated and info["correct"]
        remembering.append(reward)
        # Any memoryless policy answers the same at the (identical) query step.
        total, steps = _episode_return(env, lambda _obs: 0, seed)
        assert steps == delay + 2
        constant.append(total)
    assert len(query_observations) == 1
    assert np.mean(remembering) == 1.0
    assert abs(np.mean(constant) - 1.0 / num_cues) < 0.06


def test_memory_cue_wrong_answer_reward_and_reset_required() -> None:
    env = gymnasium.make("agentgpt/MemoryCue-v0", delay=0, wrong_reward=-1.0).unwrapped
    obs, _ = env.reset(seed=3)
    wrong = 1 - int(np.argmax(obs[:2]))
    env.step(0)
    _, reward, terminated, _, info = env.step(wrong)
    assert terminated and reward == -1.0 and not info["correct"]
    with pytest.raises(RuntimeError):
        env.step(0)


# --- MultiDiscreteTarget ---------------------------------------------------------------


def test_multidiscrete_target_optimal_and_random_returns() -> None:
    env = gymnasium.make("agentgpt/MultiDiscreteTarget-v0")
    nvec = env.unwrapped.nvec
    assert isinstance(env.action_space, gymnasium.spaces.MultiDiscrete)
    assert list(nvec) == [3, 4, 5]
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])

    def copy_target(obs: np.ndarray) -> np.ndarray:
        return np.array([np.argmax(obs[o : o + n]) for o, n in zip(offsets, nvec, strict=True)])

    optimal = [_episode_return(env, copy_target, seed) for seed in range(50)]
    assert all(total == 10.0 and steps == 10 for total, steps in optimal)

    env.action_space.seed(0)
    random = [_episode_return(env, lambda _o: env.action_space.sample(), s)[0] for s in range(2000)]
    assert md_random_return(nvec, 10) == pytest.approx((1 / 3 + 1 / 4 + 1 / 5) / 3 * 10)
    assert np.mean(random) == pytest.approx(md_random_return(nvec, 10), abs=0.05)


def test_multidiscrete_target_rewards_partial_matches() -> None:
    env = gymnasium.make("agentgpt/MultiDiscreteTarget-v0", nvec=(2, 2), episode_length=1)
    obs, _ = env.reset(seed=0)
    target = np.array([np.argmax(obs[0:2]), np.argmax(obs[2:4])])
    half = target.copy()
    half[1] = 1 - half[1]
    _, reward, terminated, truncated, info = env.step(half)
    assert reward == 0.5 and info["matched"] == 1 and truncated and not terminated


# --- HybridTarget ----------------------------------------------------------------------


def test_hybrid_target_optimal_and_random_returns() -> None:
    env = gymnasium.make("agentgpt/HybridTarget-v0")
    assert set(env.action_space.spaces) == {"choice", "amount"}

    def perfect(obs: np.ndarray) -> dict:
        return {"choice": int(np.argmax(obs[:-1])), "amount": obs[-1:].copy()}

    optimal = [_episode_return(env, perfect, seed) for seed in range(50)]
    assert all(total == pytest.approx(10.0) and steps == 10 for total, steps in optimal)

    env.action_space.seed(0)
    random = [_episode_return(env, lambda _o: env.action_space.sample(), s)[0] for s in range(3000)]
    assert hybrid_random_return(3, 10) == pytest.approx(3.75)
    assert np.mean(random) == pytest.approx(3.75, abs=0.06)


def test_hybrid_target_reward_needs_both_parts() -> None:
    env = gymnasium.make("agentgpt/HybridTarget-v0", episode_length=1)
    obs, _ = env.reset(seed=1)
    choice, amount = int(np.argmax(obs[:-1])), float(obs[-1])
    off_by = 0.5 if amount < 0.5 else -0.5
    _, reward, *_ = env.step({"choice": choice, "amount": np.array([amount + off_by], np.float32)})
    assert reward == pytest.approx(0.5 + 0.5 * 0.5)
    env.reset(seed=1)
    wrong = (choice + 1) % 3
    _, reward, *_ = env.step({"choice": wrong, "amount": np.array([amount], np.float32)})
    assert reward == pytest.approx(0.5)


# --- DictObs ---------------------------------------------------------------------------


def test_dict_obs_goal_reaching_and_random_returns() -> None:
    env = gymnasium.make("agentgpt/DictObs-v0")
    assert isinstance(env.observation_space, gymnasium.spaces.Dict)
    goals = np.array([[0.75, 0.75], [-0.75, 0.75], [-0.75, -0.75], [0.75, -0.75]])

    def walk(obs: dict) -> int:
        dx, dy = goals[obs["goal"]] - obs["position"]
        if abs(dx) > 0.1:
            return 1 if dx > 0 else 2
        if abs(dy) > 0.1:
            return 3 if dy > 0 else 4
        return 0

    optimal = [_episode_return(env, walk, seed)[0] for seed in range(500)]
    assert min(optimal) >= 0.3 - 1e-9
    assert np.mean(optimal) == pytest.approx(0.67, abs=0.03)
    env.action_space.seed(0)
    random = [_episode_return(env, lambda _o: env.action_space.sample(), s)[0] for s in range(500)]
    assert np.mean(random) == pytest.approx(-0.85, abs=0.08)


# --- Landmarks (PettingZoo) ------------------------------------------------------------


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("num_agents", [2, 3])
def test_landmarks_passes_pettingzoo_api_tests(num_agents: int) -> None:
    parallel_api_test(landmarks_parallel(num_agents=num_agents), num_cycles=1000)
    api_test(landmarks_aec(num_agents=num_agents), num_cycles=1000)


def _team_return(env: LandmarksEnv, policy, seed: int) -> tuple[float, dict[str, int]]:
    obs, _ = env.reset(seed=seed)
    total, t, finished_at = 0.0, 0, {}
    while env.agents:
        acting = list(env.agents)
        obs, rewards, terminations, truncations, _ = env.step(policy(env, obs))
        t += 1
        assert set(rewards) == set(acting) == set(obs)
        # Every agent that acted pays the same team cost; claims and progress add to it.
        total += sum(rewards.values())
        for agent in acting:
            if terminations[agent] or truncations[agent]:
                finished_at[agent] = t
        assert set(env.agents) == {a for a in acting if a not in finished_at}
    return total, finished_at


def test_landmarks_agents_finish_at_different_times() -> None:
    env = landmarks_parallel()
    staggered = 0
    for seed in range(50):
        _, finished_at = _team_return(env, lambda e, _o: greedy_actions(e), seed)
        assert set(finished_at) == set(env.possible_agents)
        staggered += len(set(finished_at.values())) > 1
        assert not env.open_landmarks.any()
    assert staggered >= 25


def test_landmarks_claim_reward_team_cost_and_tie_break() -> None:
    env = landmarks_parallel(num_agents=2, grid_size=5)
    env.reset(seed=0)
    # Put both agents next to landmark 0, so both reach it on the same step.
    env._landmarks = np.array([[2, 2], [4, 4]])
    env._positions = np.array([[1, 2], [3, 2]])
    obs, rewards, terminations, truncations, infos = env.step({"agent_0": 4, "agent_1": 3})
    assert terminations == {"agent_0": True, "agent_1": False}
    assert infos["agent_0"] == {"claimed": 0}
    assert env.agents == ["agent_1"]
    team_cost = -0.05 * 1  # one landmark still open
    assert rewards["agent_0"] == pytest.approx(team_cost + 1.0 + 0.1 * 1)
    assert rewards["agent_1"] == pytest.approx(team_cost + 0.1 * 1)
    # agent_1 sees landmark 0 closed and agent_0 gone.
    assert obs["agent_1"][2:5].tolist() == [0.0, 0.0, 0.0]
    assert obs["agent_1"][8:11].tolist() == [0.0, 0.0, 0.0]
    assert obs["agent_1"][5:8].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert not any(truncations.values())


def test_landmarks_truncates_the_agents_still_present() -> None:
    env = landmarks_parallel(max_cycles=3)
    env.reset(seed=5)
    stay = {"agent_0": 0, "agent_1": 0}
    for _ in range(2):
        _, rewards, terminations, truncations, _ = env.step(stay)
        assert rewards == {"agent_0": pytest.approx(-0.1), "agent_1": pytest.approx(-0.1)}
        assert not any(truncations.values())
    _, _, terminations, truncations, _ = env.step(stay)
    assert truncations == {"agent_0": True, "agent_1": True}
    assert not any(terminations.values()) and env.agents == []


def test_landmarks_reset_is_seeded() -> None:
    a, b = landmarks_parallel(), landmarks_parallel()
    obs_a, _ = a.reset(seed=11)
    obs_b, _ = b.reset(seed=11)
    assert all(np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)
    assert np.array_equal(a.landmarks, b.landmarks)
    for agent in a.possible_agents:
        assert a.observation_space(agent).contains(obs_a[agent])


@pytest.mark.parametrize(
    ("num_agents", "random_mean", "greedy_mean"), [(2, -1.6, 2.29), (3, -3.0, 3.27)]
)
def test_landmarks_documented_random_and_greedy_team_returns(
    num_agents: int, random_mean: float, greedy_mean: float
) -> None:
    env = landmarks_parallel(num_agents=num_agents)
    rng = np.random.default_rng(0)

    def random_policy(e: LandmarksEnv, _obs) -> dict[str, int]:
        return {agent: int(rng.integers(5)) for agent in e.agents}

    episodes = 1000
    random = [_team_return(env, random_policy, seed)[0] for seed in range(episodes)]
    greedy = [_team_return(env, lambda e, _o: greedy_actions(e), s)[0] for s in range(episodes)]
    assert np.mean(random) == pytest.approx(random_mean, abs=0.2)
    assert np.mean(greedy) == pytest.approx(greedy_mean, abs=0.05)
    assert np.mean(greedy) - np.mean(random) > 3.0
