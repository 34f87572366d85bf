"""SB3VecEnv: a RemoteVectorEnv as an SB3 VecEnv, checked against SB3's own DummyVecEnv."""

from __future__ import annotations

import sys

import gymnasium
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

import agentgpt.envs  # noqa: E402, F401  (registers the agentgpt/ ids)
from agentgpt.integrations.sb3 import SB3VecEnv  # noqa: E402
from agentgpt.remote import Fleet, RemoteEnv, RemoteVectorEnv  # noqa: E402
from agentgpt.remote.testing import same_values  # noqa: E402

NUM_ENVS = 3
MODES = ["same_step", "next_step", "disabled"]


def _remote(url: str, env_name: str, mode: str = "same_step", **env_kwargs) -> SB3VecEnv:
    return SB3VecEnv(
        RemoteVectorEnv(url, env_name, NUM_ENVS, autoreset_mode=mode, env_kwargs=env_kwargs)
    )


def _local(env_name: str, **env_kwargs) -> DummyVecEnv:
    return DummyVecEnv([lambda: gymnasium.make(env_name, **env_kwargs) for _ in range(NUM_ENVS)])


def _check_obs(venv: SB3VecEnv, obs) -> None:
    """Observations are batched per SB3's layout: (num_envs, *shape) of the space's dtype."""
    space = venv.observation_space
    if isinstance(space, gymnasium.spaces.Dict):
        assert set(obs) == set(space.spaces)
        for key, sub in space.spaces.items():
            assert obs[key].shape == (NUM_ENVS, *sub.shape)
            assert obs[key].dtype == sub.dtype
            assert all(sub.contains(row) for row in obs[key])
    else:
        assert obs.shape == (NUM_ENVS, *space.shape)
        assert obs.dtype == space.dtype
        assert all(space.contains(row) for row in obs)


def _trace(venv, steps: int, seed: int) -> list:
    venv.seed(seed)
    trace = [venv.reset(), venv.reset_infos]
    actions = venv.action_space
    actions.seed(seed)
    for _ in range(steps):
        trace.append(venv.step(np.array([actions.sample() for _ in range(NUM_ENVS)])))
    return trace


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("env_name", "env_kwargs", "steps"),
    [
        ("CartPole-v1", {"max_episode_steps": 20}, 80),  # ends by termination and by time limit
        ("agentgpt/DictObs-v0", {"max_steps": 6}, 40),  # Dict observations
    ],
)
def test_steps_equal_dummy_vec_env(env_server, mode, env_name, env_kwargs, steps):
    remote = _remote(env_server(), env_name, mode, **env_kwargs)
    local = _local(env_name, **env_kwargs)
    try:
        remote.seed(11)
        local.seed(11)
        obs = remote.reset()
        assert same_values(obs, local.reset())
        assert same_values(remote.reset_infos, local.reset_infos)
        _check_obs(remote, obs)
        actions = local.action_space
        actions.seed(11)
        ends = truncations = 0
        for t in range(steps):
            action = np.array([actions.sample() for _ in range(NUM_ENVS)])
            obs, rewards, dones, infos = remote.step(action)
            local_obs, local_rewards, local_dones, local_infos = local.step(action)
            assert same_values(obs, local_obs), f"observations at step {t}"
            assert same_values(rewards, local_rewards), f"rewards at step {t}"
            assert same_values(dones, local_dones), f"dones at step {t}"
            assert same_values(infos, local_infos), f"infos at step {t}"
            assert same_values(remote.reset_infos, local.reset_infos), f"reset infos at {t}"
            _check_obs(remote, obs)
            assert isinstance(infos, list) and len(infos) == NUM_ENVS
            for done, info in zip(dones, infos, strict=True):
                assert ("terminal_observation" in info) == done
            ends += int(dones.sum())
            truncations += sum(info["TimeLimit.truncated"] for info in infos)
        assert ends > truncations > 0  # both ways of ending were checked
    finally:
        remote.close()
        local.close()


def test_time_limit_truncation(env_server):
    """CartPole cannot fall within 5 steps: every env is cut by its time limit at step 5."""
    venv = _remote(env_server(), "CartPole-v1", max_episode_steps=5)
    try:
        venv.seed(0)
        venv.reset()
        for _ in range(4):
            obs, rewards, dones, infos = venv.step(np.ones(NUM_ENVS, dtype=np.int64))
            assert not dones.any()
            assert [info["TimeLimit.truncated"] for info in infos] == [False] * NUM_ENVS
        obs, rewards, dones, infos = venv.step(np.ones(NUM_ENVS, dtype=np.int64))
        assert dones.tolist() == [True] * NUM_ENVS
        np.testing.assert_array_equal(rewards, np.ones(NUM_ENVS, dtype=np.float32))
        for row, info in zip(obs, infos, strict=True):
            assert info["TimeLimit.truncated"] is True
            terminal = info["terminal_observation"]
            assert terminal.shape == (4,) and terminal.dtype == np.float32
            assert terminal[1] > 0.5  # pushed right five times: moving right fast
            assert np.all(np.abs(row) <= 0.05)  # the next episode's first observation
    finally:
        venv.close()


def test_seeding_is_reproducible(env_server):
    venv = _remote(env_server(), "CartPole-v1", "next_step", max_episode_steps=20)
    try:
        assert venv.seed(7) == [7, 8, 9]
        first = _trace(venv, 40, seed=7)
        second = _trace(venv, 40, seed=7)
        assert same_values(first, second)
        # Seeds apply to one reset only; the next one continues the envs' generators.
        assert not np.array_equal(venv.reset(), first[0])
    finally:
        venv.close()


def test_options_apply_at_next_reset(env_server):
    venv = _remote(env_server(), "CartPole-v1")
    try:
        venv.set_options({"low": 0.2, "high": 0.2})
        np.testing.assert_array_equal(venv.reset(), np.full((NUM_ENVS, 4), 0.2, np.float32))
        assert np.all(np.abs(venv.reset()) <= 0.05)  # used once, like the seeds
        venv.set_options([{"low": 0.1, "high": 0.1}, {}, {}])
        with pytest.raises(ValueError, match="same options"):
            venv.reset()
    finally:
        venv.close()


def test_attributes(env_server):
    remote = RemoteVectorEnv(env_server(), "CartPole-v1", NUM_ENVS, autoreset_mode="same_step")
    venv = SB3VecEnv(remote)
    try:
        assert venv.num_envs == NUM_ENVS
        assert venv.render_mode is None
        assert venv.observation_space == remote.single_observation_space
        assert venv.action_space == remote.single_action_space
        assert venv.get_attr("render_mode") == [None] * NUM_ENVS
        assert venv.get_attr("action_space", indices=[0, 2]) == [remote.single_action_space] * 2
        assert venv.has_attr("observation_space")
        assert not venv.has_attr("gravity")
        with pytest.raises(AttributeError, match="gravity"):
            venv.get_attr("gravity")
        with pytest.raises(NotImplementedError, match="gravity"):
            venv.set_attr("gravity", 1.0)
        with pytest.raises(NotImplementedError, match="render"):
            venv.env_method("render")
        assert venv.env_is_wrapped(Monitor) == [False] * NUM_ENVS
        assert venv.env_is_wrapped(Monitor, indices=1) == [False]
    finally:
        venv.close()
    assert remote.closed


def test_refuses_what_is_not_a_vector_env(env_server):
    url = env_server()
    env = RemoteEnv(url, "CartPole-v1")
    try:
        with pytest.raises(TypeError, match="DummyVecEnv"):
            SB3VecEnv(env)
    finally:
        env.close()
    fleet = Fleet.from_urls([url], "CartPole-v1", envs_per_host=2)
    try:
        with pytest.raises(TypeError, match="asynchronous"):
            SB3VecEnv(fleet)
    finally:
        fleet.close()


def test_ppo_learns_on_remote_envs(env_server):
    venv = VecMonitor(_remote(env_server(), "CartPole-v1", max_episode_steps=50))
    try:
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
        model.learn(total_timesteps=512)
        assert model.num_timesteps >= 512
        assert len(model.ep_info_buffer) > 0  # episodes were seen through the infos
    finally:
        venv.close()


def test_import_error_names_the_extra(monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "stable_baselines3"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.delitem(sys.modules, "agentgpt.integrations.sb3")
    with pytest.raises(ImportError, match=r'pip install "agentgpt\[sb3\]"'):
        import agentgpt.integrations.sb3  # noqa: F401


def test_frames_of_remote_envs(env_server):
    """SB3's ``get_images`` (behind ``VecVideoRecorder``) gets each remote env's frame."""
    remote = RemoteVectorEnv(
        env_server(), "CartPole-v1", NUM_ENVS, autoreset_mode="same_step", render_mode="rgb_array"
    )
    venv = SB3VecEnv(remote)
    try:
        venv.seed(0)
        venv.reset()
        frames = venv.get_images()
        assert len(frames) == NUM_ENVS
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
        local = gymnasium.make("CartPole-v1", render_mode="rgb_array")
        local.reset(seed=0)
        np.testing.assert_array_equal(frames[0], local.render())
        local.close()
    finally:
        venv.close()
