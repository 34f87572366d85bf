"""RemoteVectorEnv equals a local gymnasium.make_vec step by step, in every autoreset mode."""

from __future__ import annotations

import gymnasium
import httpx
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)
from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.remote import RemoteVectorEnv
from agentgpt.remote.testing import same_values

KEY = "remote-vector-test-key"
ENCODINGS = ["msgpack", "json"]
MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}
NUM_ENVS = 3


@pytest.fixture(scope="module")
def url():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        yield base_url


def _assert_equal(remote, local, what: str) -> None:
    """Exact equality of values, types and dtypes (object arrays element by element)."""
    assert same_values(remote, local), f"{what} differ:\n{remote!r}\n{local!r}"


def _run_side_by_side(remote: VectorEnv, local: VectorEnv, steps: int, mode: str) -> int:
    """Step both envs with the same actions; return how many sub-episodes ended."""
    _assert_equal(remote.reset(seed=42), local.reset(seed=42), "reset")
    actions = local.action_space
    actions.seed(42)
    ends = 0
    for t in range(steps):
        action = actions.sample()
        remote_step = remote.step(action)
        local_step = local.step(action)
        for name, remote_part, local_part in zip(
            ["observations", "rewards", "terminations", "truncations", "infos"],
            remote_step,
            local_step,
            strict=True,
        ):
            _assert_equal(remote_part, local_part, f"step {t} {name}")
        ended = local_step[2] | local_step[3]
        ends += int(ended.sum())
        if mode == "disabled" and ended.any():
            mask = ended.copy()
            _assert_equal(
                remote.reset(options={"reset_mask": mask}),
                local.reset(options={"reset_mask": mask.copy()}),
                f"masked reset after step {t}",
            )
    return ends


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    ("env_name", "steps"),
    [
        ("CartPole-v1", 90),  # Box observations; episodes of varied length
        ("agentgpt/MultiDiscreteTarget-v0", 25),  # MultiDiscrete actions; int infos
        ("agentgpt/DictObs-v0", 45),  # Dict observations
    ],
)
def test_equals_local_make_vec(url, env_name, steps, mode, encoding):
    local = gymnasium.make_vec(
        env_name,
        num_envs=NUM_ENVS,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": MODES[mode]},
    )
    with RemoteVectorEnv(
        url, env_name, NUM_ENVS, KEY, autoreset_mode=mode, encoding=encoding
    ) as remote:
        assert remote.num_envs == NUM_ENVS
        assert remote.metadata["autoreset_mode"] is MODES[mode]
        assert remote.single_observation_space == local.single_observation_space
        assert remote.single_action_space == local.single_action_space
        assert remote.observation_space == local.observation_space
        assert remote.action_space == local.action_space
        ends = _run_side_by_side(remote, local, steps, mode)
    local.close()
    assert ends >= 4, f"only {ends} episode ends: the comparison did not cross enough of them"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_step_infos_carry_final_obs_like_gymnasium(url, encoding):
    """Spot-check the renamed keys directly, not only through equality."""
    with RemoteVectorEnv(
        url,
        "agentgpt/MultiDiscreteTarget-v0",
        2,
        KEY,
        autoreset_mode=AutoresetMode.SAME_STEP,
        env_kwargs={"episode_length": 2},
        encoding=encoding,
    ) as env:
        env.reset(seed=0)
        _, _, _, truncated, info = env.step(np.zeros((2, 3), dtype=np.int64))
        assert not truncated.any() and "final_obs" not in info
        _, _, _, truncated, info = env.step(np.zeros((2, 3), dtype=np.int64))
        assert truncated.all()
        assert "final_observation" not in info
        assert info["_final_obs"].dtype == np.bool_ and info["_final_obs"].all()
        assert info["final_obs"].dtype == object
        assert all(o.shape == (12,) and o.dtype == np.float32 for o in info["final_obs"])
        assert info["final_info"]["matched"].dtype == np.int64


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_reset_with_a_seed_per_sub_env(url, encoding):
    local = gymnasium.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    with RemoteVectorEnv(url, "CartPole-v1", 3, KEY, encoding=encoding) as remote:
        _assert_equal(
            remote.reset(seed=[5, None, 9])[0][[0, 2]],
            local.reset(seed=[5, None, 9])[0][[0, 2]],
            "observations of the seeded sub-envs",
        )
    local.close()


def test_reset_accepts_a_numpy_integer_seed(url):
    local = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with RemoteVectorEnv(url, "CartPole-v1", 2, KEY) as remote:
        _assert_equal(remote.reset(seed=np.int64(3))[0], local.reset(seed=3)[0], "observations")
    local.close()


def test_close_frees_the_server_env(url):
    env = RemoteVectorEnv(url, "CartPole-v1", 2, KEY)
    env.reset(seed=0)
    env.close()
    assert env.closed
    env.close()
    answer = httpx.post(
        f"{url}/step",
        json={"env_key": env.env_key, "action": [0, 0]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "env_not_found"


def test_async_vectorization_equals_local(url):
    """Sub-envs in their own server-side processes give the same values."""
    local = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with RemoteVectorEnv(url, "CartPole-v1", 2, KEY, vectorization_mode="async") as remote:
        ends = _run_side_by_side(remote, local, 40, "next_step")
    local.close()
    assert ends >= 2
