"""A Gymnasium vector env behind the asynchronous vector-env protocol.

The trainer collects from one protocol (:mod:`agentgpt.core.async_env`); a local vector
env is the case where every env answers at once. :class:`LocalVectorEnv` turns
``reset``/``step`` into ``async_reset``/``recv``/``send``: ``recv`` hands over one
:class:`~agentgpt.core.step_batch.StepBatch` row per env (present, never cut), and once
every row has its action the next ``recv`` steps the vector env.

The rows follow NEXT_STEP autoreset, as a fleet of env servers delivers them: the row
that ends an episode carries its final observation, and the env's next row is its reset
(the new first observation, reward 0, no flags); the action sent for a final observation
is ignored. Two kinds of vector env are accepted:

* NEXT_STEP (Gymnasium's default): the vector env resets on its own; rows pass through.
* DISABLED: the adapter performs the reset step itself. A ``SyncVectorEnv``'s sub-envs
  (its public ``envs`` list) are stepped one by one, each env that ended an episode
  reset instead of stepped, exactly as NEXT_STEP does and with every env in every
  batch. Any other vector env steps all its envs at once, so there the envs that ended
  an episode are reset first (``reset(options={"reset_mask": ...})``) and the next
  ``recv`` returns only their rows; the other envs keep their actions and step, all
  together, once the reset envs have acted too.

With a DISABLED ``SyncVectorEnv`` everything a local run needs to continue exactly lives
in the sub-envs and in this adapter (:meth:`state_dict`), so the trainer makes its own
envs that way. The adapter imports no torch.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import concatenate, create_empty_array, iterate

from agentgpt.core.batching import RowStore, take
from agentgpt.core.step_batch import StepBatch, empty_batch

__all__ = ["LocalVectorEnv", "add_info", "autoreset_mode", "info_rows"]


def autoreset_mode(envs: gymnasium.vector.VectorEnv) -> AutoresetMode:
    """The autoreset mode a vector env declares (NEXT_STEP when it declares none)."""
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return AutoresetMode(mode) if isinstance(mode, str) else mode


def info_rows(info: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """Rows ``index`` of a Gymnasium vector-style info dict (``{key: values, "_key":
    mask}``, nested for dict-valued infos)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = info_rows(value, index)
        else:
            out[key] = np.asarray(value)[index]
    return out


def add_info(infos: dict[str, Any], info: dict[str, Any], row: int, n: int) -> dict[str, Any]:
    """Put one env's ``info`` at ``row`` of the vector-style ``infos`` of ``n`` envs
    (Gymnasium's layout: ``{key: values, "_key": mask}``, nested for dict values)."""
    for key, value in info.items():
        if isinstance(value, dict):
            array: Any = add_info(infos.get(key, {}), value, row, n)
        else:
            array = infos.get(key)
            if array is None:
                if type(value) in (int, float, bool) or isinstance(value, np.number):
                    array = np.zeros(n, dtype=type(value))
                elif isinstance(value, np.ndarray):
                    array = np.zeros((n, *value.shape), dtype=value.dtype)
                else:
                    array = np.full(n, None, dtype=object)
            array[row] = value
        mask = infos.get(f"_{key}")
        if mask is None:
            mask = np.zeros(n, dtype=bool)
        mask[row] = True
        infos[key], infos[f"_{key}"] = array, mask
    return infos


class LocalVectorEnv:
    """Drives a Gymnasium vector env through ``async_reset``/``recv``/``send``; see the
    module doc."""

    def __init__(self, envs: gymnasium.vector.VectorEnv) -> None:
        mode = autoreset_mode(envs)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(
                f"needs a vector env with NEXT_STEP or DISABLED autoreset (got {mode})"
            )
        self.envs = envs
        #: Whether this adapter performs the reset step (DISABLED), or the vector env does.
        self.resets_itself = mode == AutoresetMode.DISABLED
        #: Whether the sub-envs are stepped one by one (a DISABLED SyncVectorEnv).
        self.steps_each = self.resets_itself and isinstance(envs, gymnasium.vector.SyncVectorEnv)
        self.num_envs = int(envs.num_envs)
        self.single_observation_space = envs.single_observation_space
        self.single_action_space = envs.single_action_space
        n = self.num_envs
        self._ids = np.arange(n, dtype=np.int64)
        self._actions = RowStore(self.single_action_space, n)
        self._acted = np.zeros(n, bool)  # an action came since the env's last row
        self._awaiting = np.zeros(n, bool)  # the env's last row still awaits its action
        self._must_reset = np.zeros(n, bool)  # the env's next row is its reset step
        self._next: StepBatch | None = None  # the batch the next recv hands over

    # ------------------------------------------------------------------ protocol
    def async_reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Reset every env; the first observations arrive through :meth:`recv`."""
        obs, info = self.envs.reset(seed=seed, options=options)
        n = self.num_envs
        self._acted[:] = False
        self._awaiting[:] = False
        self._must_reset[:] = False
        self._next = self._batch(
            self._ids, obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), info
        )

    def recv(self, timeout: float | None = None, *, max_wait: float = 0.0) -> StepBatch:
        """The next rows: every env's step, or (DISABLED) the reset rows of the envs that
        just ended an episode. Local envs answer at once, so ``max_wait`` has nothing to
        wait for; with ``timeout``, an empty batch while actions are still missing."""
        batch = self._next if self._next is not None else self._advance()
        if batch is None:
            if timeout is not None:
                return empty_batch(self.single_observation_space)
            missing = np.flatnonzero(self._awaiting)[:8].tolist()
            raise RuntimeError(f"recv() needs actions for env(s) {missing} first (send them)")
        self._next = None
        self._awaiting[batch.env_ids] = True
        return batch

    def send(self, actions: Any, env_ids: Any) -> None:
        """Actions (a batch of ``single_action_space`` values, in ``env_ids`` order) for
        envs the last batches returned; each env acts once per row."""
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return
        if ids.min() < 0 or ids.max() >= self.num_envs:
            raise ValueError(f"env_ids must lie in [0, {self.num_envs}), got {ids.tolist()}")
        if not self._awaiting[ids].all() or np.unique(ids).size != ids.size:
            raise ValueError(
                f"env(s) {ids.tolist()} are not each awaiting one action: send one action"
                " for each env recv() returned, once"
            )
        if ids.size == self.num_envs and (ids == self._ids).all():
            self._actions = RowStore(self.single_action_space, self.num_envs, actions)
        else:
            self._actions.put(ids, actions)
        self._awaiting[ids] = False
        self._acted[ids] = True

    def close(self) -> None:
        self.envs.close()

    # ------------------------------------------------------------------ stepping
    def _advance(self) -> StepBatch | None:
        """Reset or step whatever has its actions; None while actions are missing."""
        if self.steps_each:
            return self._step_each() if self._acted.all() else None
        resetting = self._must_reset & self._acted
        if resetting.any():
            obs, info = self.envs.reset(options={"reset_mask": resetting.copy()})
            rows = np.flatnonzero(resetting)
            self._must_reset[rows] = False
            self._acted[rows] = False
            count = rows.size
            space = self.single_observation_space
            return self._batch(
                rows,
                take(space, obs, rows),
                np.zeros(count),
                np.zeros(count, bool),
                np.zeros(count, bool),
                info_rows(info, rows),
            )
        if not self._acted.all():
            return None
        obs, reward, terminated, truncated, info = self.envs.step(self._actions.value())
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        self._acted[:] = False
        if self.resets_itself:
            self._must_reset = terminated | truncated
        return self._batch(self._ids, obs, reward, terminated, truncated, info)

    def _step_each(self) -> StepBatch:
        """Step every sub-env, resetting instead those that ended an episode (NEXT_STEP)."""
        n = self.num_envs
        observations = []
        reward = np.zeros(n)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        infos: dict[str, Any] = {}
        actions = iterate(self.envs.action_space, self._actions.value())
        for i, (env, action) in enumerate(zip(self.envs.envs, actions, strict=True)):
            if self._must_reset[i]:
                obs, info = env.reset()
            else:
                obs, reward[i], terminated[i], truncated[i], info = env.step(action)
            observations.append(obs)
            add_info(infos, info, i, n)
        space = self.single_observation_space
        batch = concatenate(space, observations, create_empty_array(space, n, fn=np.zeros))
        self._acted[:] = False
        self._must_reset = terminated | truncated
        return self._batch(self._ids, batch, reward, terminated, truncated, infos)

    def _batch(
        self,
        ids: np.ndarray,
        obs: Any,
        reward: Any,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
    ) -> StepBatch:
        count = ids.size
        return StepBatch(
            env_ids=ids,
            present=np.ones(count, bool),
            obs=obs,
            reward=np.asarray(reward, np.float64),
            terminated=terminated,
            truncated=truncated,
            cut=np.zeros(count, bool),
            info=info,
        )

    # ------------------------------------------------------------------ state
    @property
    def saveable(self) -> bool:
        """Whether :meth:`state_dict` captures the envs completely: sub-envs of a
        synchronous vector env that this adapter steps one by one."""
        return self.steps_each

    def state_dict(self) -> dict[str, Any]:
        """The sub-envs and this adapter's bookkeeping (pending actions, envs that must
        reset, the batch not yet handed over); pickle it to save a local run."""
        if not self.saveable:
            raise ValueError("only a SyncVectorEnv with DISABLED autoreset can be saved")
        return {
            "envs": list(self.envs.envs),
            "actions": self._actions.value(),
            "acted": self._acted.copy(),
            "awaiting": self._awaiting.copy(),
            "must_reset": self._must_reset.copy(),
            "next": self._next,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the current sub-envs are closed)."""
        if not self.saveable:
            raise ValueError("only a SyncVectorEnv with DISABLED autoreset can be restored")
        if len(state["envs"]) != self.num_envs:
            raise ValueError(f"the state holds {len(state['envs'])} envs, not {self.num_envs}")
        for env in self.envs.envs:
            env.close()
        self.envs.envs = list(state["envs"])
        self._actions = RowStore(self.single_action_space, self.num_envs, state["actions"])
        self._acted = state["acted"].copy()
        self._awaiting = state["awaiting"].copy()
        self._must_reset = state["must_reset"].copy()
        self._next = state["next"]
