"""Remote envs are indistinguishable from local ones, by Gymnasium's and PettingZoo's own checkers.

Everything runs against one real env server on loopback:

- Gymnasium's ``check_env`` on ``RemoteEnv`` for envs that together cover every space the
  protocol carries (Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple, Text, Sequence,
  OneOf), in observations and in actions; the remote env raises no warning the local one
  does not.
- Gymnasium's ``data_equivalence`` (exact) between remote and local traces: reset and a few
  hundred seeded steps, single env and vector env, every autoreset mode, both encodings.
  Dict keys must also come in the same order.
- PettingZoo's ``parallel_api_test`` and ``parallel_seed_test`` on ``RemoteParallelEnv``.

The envs defined here return what real envs return and the wire loses without type notes:
Python ints and tuples where the space's canonical values are NumPy, Dicts in their own key
order (not the space's sorted one), NumPy scalars, ``int8``, bool and zero-size arrays,
tuples and infinities in infos.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from pettingzoo.classic import rps_v2
from pettingzoo.test import parallel_api_test, parallel_seed_test

import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)
from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.remote import RemoteEnv, RemoteParallelEnv, RemoteVectorEnv

KEY = "conformance-test-key"
ENCODINGS = ["json", "msgpack"]
MODES = {
    "disabled": AutoresetMode.DISABLED,
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
}
#: Gymnasium 1.x renamed Taxi-v3 to Taxi-v4; whichever this Gymnasium registers.
TAXI = next((name for name in ("Taxi-v3", "Taxi-v4") if name in gymnasium.registry), "Taxi-v4")
SINGLE_STEPS = 200
VECTOR_STEPS = 120
NUM_ENVS = 3

# ----------------------------------------------------------------------------- test envs


class KitchenSinkEnv(gymnasium.Env):
    """Every leaf space in one Dict observation, and the types real envs return.

    The observation Dict comes in the env's own key order (Gymnasium sorts the space's);
    Discrete values are Python ints, the Tuple a Python tuple. Rewards are Python ints (as
    Taxi's), ``terminated`` a NumPy bool. Infos hold NumPy scalars, ``int8``, bool and
    zero-size arrays, tuples, nested maps, ``None`` and an infinity. (Not string arrays:
    ``check_env`` compares arrays with ``np.allclose``, which refuses them.)
    """

    metadata = {"render_modes": [], "render_fps": 7}

    def __init__(self, episode_length: int = 6) -> None:
        self.episode_length = episode_length
        self.observation_space = spaces.Dict(
            {
                "text": spaces.Text(5, charset="abc"),
                "bits": spaces.MultiBinary(4),
                "grid": spaces.MultiDiscrete([3, 4]),
                "pair": spaces.Tuple((spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32))),
                "count": spaces.Discrete(10, start=-2),
            }
        )
        self.action_space = spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2)))
        self._t = 0

    def _observation(self) -> dict[str, Any]:
        rng = self.np_random
        return {
            "text": "".join(rng.choice(list("abc"), size=int(rng.integers(1, 6)))),
            "bits": rng.integers(0, 2, 4).astype(np.int8),
            "grid": np.array([rng.integers(3), rng.integers(4)], dtype=np.int64),
            "pair": (int(rng.integers(3)), rng.uniform(-1, 1, 2).astype(np.float32)),
            "count": self._t - 2,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        info = {"start": True, "layout": (1, 2.5, "x"), "mask": np.array([1, 0, 1], np.int8)}
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict[str, Any], int, Any, bool, dict[str, Any]]:
        move, buttons = action
        self._t += 1
        rng = self.np_random
        info = {
            "score": np.float32(rng.uniform()),
            "level": np.int8(self._t),
            "flag": np.bool_(move == 1),
            "ratio": float("inf") if move == 2 else 0.5,
            "empty": np.zeros((0, 3), dtype=np.float32),
            "flags": np.array([move == 0, move == 2]),
            "nested": {"pair": (np.int16(3), [1, 2.0, None]), "none": None},
        }
        reward = int(move) - int(np.sum(buttons))
        terminated = np.bool_(self._t >= self.episode_length)
        return self._observation(), reward, terminated, False, info


class NestedEnv(gymnasium.Env):
    """Sequence and OneOf observations, Text and 0-d Box actions inside a Dict action."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Tuple(
            (
                spaces.Sequence(spaces.Discrete(4)),
                spaces.OneOf((spaces.Discrete(2), spaces.Box(0, 1, (2,), np.float32))),
            )
        )
        self.action_space = spaces.Dict(
            {"word": spaces.Text(4, charset="xy"), "power": spaces.Box(0, 1, (), np.float32)}
        )
        self._t = 0

    def _observation(self) -> tuple[Any, Any]:
        rng = self.np_random
        sequence = tuple(int(v) for v in rng.integers(4, size=int(rng.integers(0, 4))))
        if rng.integers(2):
            return sequence, (1, rng.uniform(0, 1, 2).astype(np.float32))
        return sequence, (0, int(rng.integers(2)))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[Any, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._observation(), {}

    def step(self, action: dict[str, Any]) -> tuple[tuple[Any, Any], float, bool, bool, dict]:
        self._t += 1
        reward = float(action["power"]) * len(action["word"])
        truncated = self._t >= 5
        return self._observation(), reward, False, truncated, {"word": action["word"]}


KITCHEN_SINK = "conformance/KitchenSink-v0"
NESTED = "conformance/Nested-v0"
TEST_ENVS: dict[str, Callable[..., gymnasium.Env]] = {
    KITCHEN_SINK: KitchenSinkEnv,
    NESTED: NestedEnv,
}


def _local(name: str, **kwargs: Any) -> gymnasium.Env:
    """The env the server builds for ``name``, built here."""
    if name in TEST_ENVS:
        return TEST_ENVS[name](**kwargs)
    return gymnasium.make(name, **kwargs)


def _local_vector(name: str, mode: str, **kwargs: Any) -> gymnasium.vector.VectorEnv:
    if name in TEST_ENVS:
        factory = TEST_ENVS[name]
        return SyncVectorEnv([lambda: factory(**kwargs)] * NUM_ENVS, autoreset_mode=MODES[mode])
    return gymnasium.make_vec(
        name,
        num_envs=NUM_ENVS,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": MODES[mode]},
        **kwargs,
    )


def _param_id(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"
    return str(value)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = EnvServer(
        api_keys=[KEY], register={**TEST_ENVS, **PETTINGZOO_ENVS, "rps": rps_v2.parallel_env}
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


# ----------------------------------------------------------------------------- equality


def _key_order_differs(a: Any, b: Any) -> str | None:
    """Where two equivalent values hold dicts with the same keys in another order."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"keys {list(a)} != {list(b)}"
        for key in a:
            where = _key_order_differs(a[key], b[key])
            if where is not None:
                return f"[{key!r}] {where}"
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            where = _key_order_differs(x, y)
            if where is not None:
                return f"[{i}] {where}"
    elif isinstance(a, np.ndarray) and a.dtype == object and isinstance(b, np.ndarray):
        for i, (x, y) in enumerate(zip(a.flat, b.flat, strict=False)):
            where = _key_order_differs(x, y)
            if where is not None:
                return f"[{i}] {where}"
    return None


def assert_equivalent(remote: Any, local: Any, what: str) -> None:
    """Gymnasium's exact ``data_equivalence``, and the same key order in every dict."""
    assert data_equivalence(remote, local, exact=True), (
        f"{what}: remote and local differ:\n{remote!r}\n{local!r}"
    )
    order = _key_order_differs(remote, local)
    assert order is None, f"{what}: {order}"


# ----------------------------------------------------------------------------- check_env

#: Together these cover every space the protocol carries, as observations and as actions:
#: Box (CartPole, Pendulum's actions, HybridTarget's), Discrete (Taxi, FrozenLake),
#: MultiDiscrete (MultiDiscreteTarget's actions, KitchenSink), MultiBinary and Text
#: (KitchenSink, Nested's actions), Dict (DictObs, HybridTarget's actions, KitchenSink,
#: Nested's actions), Tuple (Blackjack, KitchenSink, Nested), Sequence and OneOf (Nested).
CHECK_ENV_SWEEP = [
    ("CartPole-v1", {}),
    ("Pendulum-v1", {}),
    (TAXI, {}),
    ("FrozenLake-v1", {}),
    ("Blackjack-v1", {}),
    ("agentgpt/DictObs-v0", {}),
    ("agentgpt/MultiDiscreteTarget-v0", {}),
    ("agentgpt/HybridTarget-v0", {}),
    (KITCHEN_SINK, {}),
    (NESTED, {}),
]


def _check_env_warnings(env: gymnasium.Env, **kwargs: Any) -> set[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, **kwargs)
    return {str(w.message) for w in caught}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("env_name", "env_kwargs"), CHECK_ENV_SWEEP, ids=_param_id)
def test_check_env_passes_on_the_remote_env(url, env_name, env_kwargs, encoding):
    local = _local(env_name, **env_kwargs)
    with RemoteEnv(url, env_name, KEY, env_kwargs=env_kwargs, encoding=encoding) as remote:
        assert remote.observation_space == local.observation_space
        assert remote.action_space == local.action_space
        # Render checks are skipped on both sides: the local env's would open windows, and
        # rendering has its own tests (test_render.py).
        remote_warnings = _check_env_warnings(remote, skip_render_check=True)
    local_warnings = _check_env_warnings(
        local.unwrapped, skip_render_check=True, skip_close_check=True
    )
    local.close()
    assert remote_warnings <= local_warnings, remote_warnings - local_warnings


# ----------------------------------------------------------------------------- traces


class SameStepAutoreset(gymnasium.Wrapper):
    """The protocol's same-step mode for single envs, locally (gym 0.26's AutoResetWrapper):
    an ending step resets at once and moves its observation and info into the reset info."""

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            new_obs, new_info = self.env.reset()
            info = {**new_info, "final_observation": obs, "final_info": info}
            obs = new_obs
        return obs, reward, terminated, truncated, info


def _local_single(name: str, mode: str, **kwargs: Any) -> gymnasium.Env:
    env = _local(name, **kwargs)
    if mode == "next_step":
        return gymnasium.wrappers.Autoreset(env)
    if mode == "same_step":
        return SameStepAutoreset(env)
    return env


#: (env, its kwargs): Python-int observations and rewards and an int8 info array (Taxi),
#: a Tuple of Python ints (Blackjack), NumPy float64 rewards (Pendulum), a Dict in the env's
#: key order (DictObs) and everything else the test envs return.
TRACE_ENVS = [
    (TAXI, {"max_episode_steps": 25}),
    ("Blackjack-v1", {}),
    ("Pendulum-v1", {"max_episode_steps": 40}),
    ("agentgpt/DictObs-v0", {}),
    (KITCHEN_SINK, {}),
    (NESTED, {}),
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("env_name", "env_kwargs"), TRACE_ENVS, ids=_param_id)
def test_single_env_traces_are_equivalent(url, env_name, env_kwargs, mode, encoding):
    local = _local_single(env_name, mode, **env_kwargs)
    actions = local.action_space
    actions.seed(11)
    ends = 0
    with RemoteEnv(
        url, env_name, KEY, env_kwargs=env_kwargs, autoreset_mode=mode, encoding=encoding
    ) as remote:
        assert_equivalent(remote.reset(seed=7), local.reset(seed=7), "reset")
        for t in range(SINGLE_STEPS):
            action = actions.sample()
            local_step = local.step(action)
            assert_equivalent(remote.step(action), local_step, f"step {t}")
            if local_step[2] or local_step[3]:
                ends += 1
                if mode == "disabled":
                    assert_equivalent(remote.reset(), local.reset(), f"reset after step {t}")
    local.close()
    assert ends >= 3, f"only {ends} episode ends: too few to compare autoreset"


VECTOR_TRACE_ENVS = [
    (TAXI, {"max_episode_steps": 15}),
    ("agentgpt/DictObs-v0", {}),
    (KITCHEN_SINK, {}),
    (NESTED, {}),
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("env_name", "env_kwargs"), VECTOR_TRACE_ENVS, ids=_param_id)
def test_vector_env_traces_are_equivalent(url, env_name, env_kwargs, mode, encoding):
    local = _local_vector(env_name, mode, **env_kwargs)
    actions = local.action_space
    actions.seed(5)
    ends = 0
    with RemoteVectorEnv(
        url,
        env_name,
        NUM_ENVS,
        KEY,
        env_kwargs=env_kwargs,
        autoreset_mode=mode,
        encoding=encoding,
    ) as remote:
        assert remote.metadata["autoreset_mode"] is MODES[mode]
        assert_equivalent(remote.metadata, local.metadata, "metadata")
        assert_equivalent(remote.reset(seed=3), local.reset(seed=3), "reset")
        for t in range(VECTOR_STEPS):
            action = actions.sample()
            local_step = local.step(action)
            assert_equivalent(remote.step(action), local_step, f"step {t}")
            ended = local_step[2] | local_step[3]
            ends += int(ended.sum())
            if mode == "disabled" and ended.any():
                assert_equivalent(
                    remote.reset(options={"reset_mask": ended.copy()}),
                    local.reset(options={"reset_mask": ended.copy()}),
                    f"masked reset after step {t}",
                )
    local.close()
    assert ends >= 3, f"only {ends} sub-episode ends: too few to compare autoreset"


def test_vector_metadata_carries_the_render_settings(url):
    local = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with RemoteVectorEnv(url, "CartPole-v1", 2, KEY) as remote:
        assert remote.metadata["render_modes"] == local.metadata["render_modes"]
        assert remote.metadata["render_fps"] == local.metadata["render_fps"]
    local.close()


# ----------------------------------------------------------------------------- PettingZoo

PARALLEL_ENVS = [("rps", {"max_cycles": 15}), ("agentgpt/Landmarks-v0", {"num_agents": 3})]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("env_name", "env_kwargs"), PARALLEL_ENVS, ids=_param_id)
def test_parallel_api_test_passes(url, env_name, env_kwargs, encoding):
    with RemoteParallelEnv(url, env_name, KEY, env_kwargs=env_kwargs, encoding=encoding) as env:
        parallel_api_test(env, num_cycles=60)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("env_name", "env_kwargs"), PARALLEL_ENVS, ids=_param_id)
def test_parallel_seed_test_passes(url, env_name, env_kwargs, encoding):
    with contextlib.ExitStack() as made:

        def make() -> RemoteParallelEnv:
            env = RemoteParallelEnv(url, env_name, KEY, env_kwargs=env_kwargs, encoding=encoding)
            return made.enter_context(env)

        parallel_seed_test(make, num_cycles=60)
