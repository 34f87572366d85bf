"""The local adapter: a Gymnasium vector env behind the asynchronous protocol (no torch)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agentgpt.core.async_env import is_async_vector_env
from agentgpt.core.local import LocalVectorEnv, add_info, info_rows


def _cartpoles(mode: AutoresetMode, n: int = 3, steps: int = 5) -> gymnasium.vector.SyncVectorEnv:
    return gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make("CartPole-v1", max_episode_steps=steps)] * n,
        autoreset_mode=mode,
    )


def _actions(t: int, n: int) -> np.ndarray:
    return np.array([(t + i) % 2 for i in range(n)], np.int64)


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.NEXT_STEP])
def test_rows_match_stepping_the_vector_env_directly(mode: AutoresetMode) -> None:
    """Same observations, rewards and flags as a NEXT_STEP SyncVectorEnv stepped by
    hand, including the reset row after every episode end."""
    reference = _cartpoles(AutoresetMode.NEXT_STEP)
    local = LocalVectorEnv(_cartpoles(mode))
    assert is_async_vector_env(local) and local.num_envs == 3
    obs, _ = reference.reset(seed=7)
    local.async_reset(seed=7)
    batch = local.recv()
    np.testing.assert_array_equal(batch.obs, obs)
    assert batch.present.all() and not batch.cut.any() and batch.env_ids.tolist() == [0, 1, 2]
    ended_then_reset = 0
    previous_done = np.zeros(3, bool)
    for t in range(14):
        local.send(_actions(t, 3), batch.env_ids)
        obs, reward, term, trunc, _ = reference.step(_actions(t, 3))
        batch = local.recv()
        assert batch.env_ids.tolist() == [0, 1, 2]  # every env in every batch
        np.testing.assert_array_equal(batch.obs, obs)
        np.testing.assert_array_equal(batch.reward, reward)
        np.testing.assert_array_equal(batch.terminated, term)
        np.testing.assert_array_equal(batch.truncated, trunc)
        # NEXT_STEP: the row after an episode's end is its reset (reward 0, no flags).
        for i in np.flatnonzero(previous_done):
            assert batch.reward[i] == 0 and not (batch.terminated[i] or batch.truncated[i])
            ended_then_reset += 1
        previous_done = term | trunc
    assert ended_then_reset >= 3
    local.close()


def test_send_and_recv_order_is_enforced() -> None:
    local = LocalVectorEnv(_cartpoles(AutoresetMode.DISABLED))
    local.async_reset(seed=0)
    with pytest.raises(ValueError, match="awaiting"):
        local.send(np.zeros(1, np.int64), [0])  # no row handed over yet
    batch = local.recv()
    local.send(np.zeros(2, np.int64), [2, 0])  # any order, over several calls
    assert local.recv(timeout=0.0).env_ids.size == 0  # env 1 has not acted yet
    with pytest.raises(RuntimeError, match="send"):
        local.recv()
    with pytest.raises(ValueError, match="awaiting"):
        local.send(np.zeros(1, np.int64), [0])  # env 0 already acted
    local.send(np.ones(1, np.int64), [1])
    assert local.recv().env_ids.tolist() == batch.env_ids.tolist()
    local.close()


def test_a_vector_env_that_steps_all_envs_returns_reset_rows_on_their_own() -> None:
    """A DISABLED vector env without sub-envs to step one by one: after an episode end
    the ended envs' reset rows come alone, then every env steps."""
    envs = gymnasium.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED},
        max_episode_steps=3,
    )
    local = LocalVectorEnv(envs)
    assert not local.saveable
    local.async_reset(seed=1)
    batch = local.recv()
    kinds = []
    for t in range(8):
        ended = batch.terminated | batch.truncated
        local.send(_actions(t, batch.env_ids.size), batch.env_ids)
        batch = local.recv()
        if ended.any():  # the ended envs' reset rows, and nothing else
            assert batch.env_ids.tolist() == np.flatnonzero(ended).tolist()
            assert batch.reward.tolist() == [0.0] * int(ended.sum())
            kinds.append("reset")
        else:
            assert batch.env_ids.tolist() == [0, 1]
            kinds.append("step")
    assert kinds == ["step", "step", "step", "reset", "step", "step", "step", "reset"]
    local.close()


def test_state_round_trip_continues_exactly() -> None:
    """The adapter's state and the sub-envs, pickled mid-run (an env pending its reset
    included), continue exactly like the original on fresh envs."""
    original = LocalVectorEnv(_cartpoles(AutoresetMode.DISABLED, steps=4))
    original.async_reset(seed=3)
    batch = original.recv()
    for t in range(4):  # the episodes end at step 4: every env's next row is a reset
        original.send(_actions(t, 3), batch.env_ids)
        batch = original.recv()
    assert (batch.truncated | batch.terminated).all()
    original.send(_actions(4, 3), batch.env_ids)
    blob = pickle.dumps(original.state_dict())

    copy = LocalVectorEnv(_cartpoles(AutoresetMode.DISABLED, steps=4))
    copy.async_reset(seed=99)  # unrelated state, replaced by the saved one
    copy.load_state_dict(pickle.loads(blob))
    for t in range(5, 12):
        a, b = original.recv(), copy.recv()
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.truncated, b.truncated)
        original.send(_actions(t, 3), a.env_ids)
        copy.send(_actions(t, 3), b.env_ids)
    with pytest.raises(ValueError, match="DISABLED"):
        LocalVectorEnv(_cartpoles(AutoresetMode.NEXT_STEP)).state_dict()


def test_rejects_same_step_autoreset() -> None:
    with pytest.raises(ValueError, match="NEXT_STEP or DISABLED"):
        LocalVectorEnv(_cartpoles(AutoresetMode.SAME_STEP))


def test_vector_style_infos_are_built_and_sliced() -> None:
    infos: dict = {}
    add_info(infos, {"action_mask": np.array([1, 0], np.int8), "x": {"y": 2.5}}, 1, 3)
    add_info(infos, {"label": "a"}, 2, 3)
    assert infos["_action_mask"].tolist() == [False, True, False]
    assert infos["action_mask"][1].tolist() == [1, 0]
    assert infos["x"]["y"].tolist() == [0.0, 2.5, 0.0] and infos["_x"].tolist() == [0, 1, 0]
    rows = info_rows(infos, np.array([1, 2]))
    assert rows["_action_mask"].tolist() == [True, False]
    assert rows["label"].tolist() == [None, "a"]
    assert rows["x"]["_y"].tolist() == [True, False]


def test_adapter_imports_no_torch() -> None:
    code = "import sys, agentgpt.core.local; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
