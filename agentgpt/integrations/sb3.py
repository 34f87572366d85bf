"""Stable-Baselines3 on a Gymnasium vector env: one request steps every remote env.

SB3 trains on its own ``VecEnv`` and refuses Gymnasium's ``VectorEnv``. Wrapping each
``RemoteEnv`` in SB3's ``DummyVecEnv`` works, but costs one HTTP request per env per step.
:class:`SB3VecEnv` presents a whole :class:`~agentgpt.remote.RemoteVectorEnv` (or any
Gymnasium ``VectorEnv``) as one SB3 ``VecEnv``, so one request steps all its envs::

    from agentgpt.integrations.sb3 import SB3VecEnv
    from agentgpt.remote import RemoteVectorEnv

    venv = SB3VecEnv(RemoteVectorEnv(url, "CartPole-v1", num_envs=8, autoreset_mode="same_step"))

SB3's conventions are kept: ``reset()`` returns only observations (per-env reset infos go
to ``reset_infos``); ``step`` returns ``dones = terminated | truncated``, one info dict
per env, the new episode's first observation for a finished env, its last observation in
``info["terminal_observation"]`` and ``info["TimeLimit.truncated"]``; seeds and options
set by ``seed()`` / ``set_options()`` apply at the next ``reset()``. Same-step autoreset
is SB3's own convention, so each step is one request. In next-step and disabled modes a
step after which some envs finished is followed by one ``reset`` of just those envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from agentgpt.core.async_env import is_async_vector_env

try:
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import (
        VecEnvIndices,
        VecEnvObs,
        VecEnvStepReturn,
    )
except ImportError as exc:  # an optional dependency
    raise ImportError(
        'agentgpt.integrations.sb3 needs Stable-Baselines3: pip install "agentgpt[sb3]"'
    ) from exc

__all__ = ["SB3VecEnv"]

# Gymnasium's same-step infos: the finished episodes' last observations and step infos.
_FINAL_KEYS = ("final_obs", "_final_obs", "final_info", "_final_info")


class SB3VecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` as a Stable-Baselines3 ``VecEnv``.

    ``venv`` may use any autoreset mode (read from ``venv.metadata["autoreset_mode"]``,
    next-step when absent, as Gymnasium assumes); ``"same_step"`` needs one request per
    step, the others one more on steps where an episode ended. Closing this closes
    ``venv``.

    The sub-envs of a remote vector env live on the server, so ``get_attr`` answers only
    what the vector env itself knows, the same for every sub-env (``render_mode``,
    ``observation_space``, ``action_space``), ``set_attr`` and ``env_method`` raise, and
    ``env_is_wrapped`` is ``False``: no wrapper in this process wraps a sub-env.

    A :class:`~agentgpt.remote.Fleet` is refused: its envs need not all answer each step,
    and SB3 would take the rows of envs that did not for real transitions.
    """

    def __init__(self, venv: VectorEnv) -> None:
        if is_async_vector_env(venv) or not isinstance(venv, VectorEnv):
            raise TypeError(_not_a_vector_env(venv))
        self.venv = venv
        self.autoreset_mode = AutoresetMode(
            venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        )
        self._actions: Any = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        observations, info = self.venv.reset(seed=seeds, options=self._shared_options())
        self.reset_infos = [_env_info(info, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        self._actions = None
        return _copy(observations)

    def step_async(self, actions: np.ndarray) -> None:
        if isinstance(self.action_space, (gymnasium.spaces.Dict, gymnasium.spaces.Tuple)):
            self._actions = actions
        else:
            self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() needs a step_async(actions) first")
        actions, self._actions = self._actions, None
        observations, rewards, terminated, truncated, info = self.venv.step(actions)
        observations = _copy(observations)
        terminated = np.asarray(terminated, dtype=np.bool_)
        truncated = np.asarray(truncated, dtype=np.bool_)
        dones = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            infos = self._same_step_infos(info, dones)
        else:
            infos = [_env_info(info, i) for i in range(self.num_envs)]
            if dones.any():
                self._reset_finished(observations, infos, dones)
        for i, env_info in enumerate(infos):
            env_info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return observations, np.asarray(rewards, dtype=np.float32), dones, infos

    def _same_step_infos(self, info: dict[str, Any], dones: np.ndarray) -> list[dict[str, Any]]:
        """Gymnasium put the finished envs' step infos under ``final_info`` and their
        reset infos at the top level; SB3 wants the former in ``infos``."""
        current = {k: v for k, v in info.items() if k not in _FINAL_KEYS}
        final_info = info.get("final_info", {})
        infos = []
        for i in range(self.num_envs):
            if dones[i]:
                env_info = _env_info(final_info, i)
                env_info["terminal_observation"] = _copy(info["final_obs"][i])
                self.reset_infos[i] = _env_info(current, i)
            else:
                env_info = _env_info(current, i)
            infos.append(env_info)
        return infos

    def _reset_finished(
        self, observations: Any, infos: list[dict[str, Any]], dones: np.ndarray
    ) -> None:
        """Reset the envs that finished, in one request, as SB3's autoreset would."""
        finished = np.flatnonzero(dones)
        for i in finished:
            infos[i]["terminal_observation"] = _row(observations, i)
        first, info = self.venv.reset(options={"reset_mask": dones.copy()})
        for i in finished:
            _set_row(observations, i, _row(first, i))
            self.reset_infos[i] = _env_info(info, i)

    def _shared_options(self) -> dict[str, Any] | None:
        """A Gymnasium vector env resets all its sub-envs with one options dict."""
        first = self._options[0]
        if any(options != first for options in self._options[1:]):
            raise ValueError(
                "set_options() gave the envs different options, but a Gymnasium vector env"
                " resets all its sub-envs with the same options"
            )
        return dict(first) if first else None

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.render())

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        shared = {
            "render_mode": self.venv.render_mode,
            "observation_space": self.venv.single_observation_space,
            "action_space": self.venv.single_action_space,
        }
        if attr_name not in shared:
            raise AttributeError(
                f"{self.venv!r} does not expose its sub-envs' {attr_name!r}; SB3VecEnv can"
                f" read only {', '.join(shared)}"
            )
        return [shared[attr_name] for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise NotImplementedError(
            f"cannot set {attr_name!r} on the sub-envs of {self.venv!r}: a Gymnasium vector"
            " env (on an env server, for a remote one) owns them; set it where they are made"
        )

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        raise NotImplementedError(
            f"cannot call {method_name!r} on the sub-envs of {self.venv!r}: a Gymnasium"
            " vector env (on an env server, for a remote one) owns them"
        )

    def env_is_wrapped(
        self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.venv!r})"


def _not_a_vector_env(envs: Any) -> str:
    if is_async_vector_env(envs):
        # A Fleet's synchronous step reports envs of a down host with their last
        # observation repeated and reward 0, and cuts episodes without a last observation:
        # SB3 would learn from those rows as if they were real steps.
        return (
            f"SB3VecEnv cannot step {type(envs).__name__}, an asynchronous env source whose"
            " envs may not answer every step, in SB3's lockstep; use a RemoteVectorEnv"
        )
    message = f"SB3VecEnv takes a gymnasium.vector.VectorEnv, got {type(envs).__name__}"
    if isinstance(envs, gymnasium.Env):
        message += "; wrap single envs in stable_baselines3's DummyVecEnv"
    return message


def _env_info(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s own info from a Gymnasium vector info (arrays over envs, ``_key`` masks)."""
    result: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") and key[1:] in info:
            continue  # a mask
        mask = info.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):
            result[key] = _env_info(value, i)
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            result[key] = _copy(value[i])
        else:
            result[key] = value
    return result


def _copy(value: Any) -> Any:
    """A writable copy: remote observations may be read-only views of the answer's bytes."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _row(batch: Any, i: int) -> Any:
    """Env ``i``'s value in a batch of Gymnasium's vector layout."""
    if isinstance(batch, dict):
        return {k: _row(v, i) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_row(v, i) for v in batch)
    return _copy(batch[i])


def _set_row(batch: Any, i: int, value: Any) -> None:
    if isinstance(batch, dict):
        for k, v in batch.items():
            _set_row(v, i, value[k])
    elif isinstance(batch, tuple):
        for part, part_value in zip(batch, value, strict=True):
            _set_row(part, i, part_value)
    else:
        batch[i] = value
