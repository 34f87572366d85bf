"""``agentgpt/MultiDiscreteTarget-v0``: match a target in every component of a MultiDiscrete action.

Why it exists: it is the smallest task that exercises a factored action head (one
categorical per component) end to end, with a reward that credits each component on its
own, so partial learning shows up as a partial return.

Each step the observation shows a fresh random target ``t`` with ``t[i] in [0, nvec[i])``,
one-hot per component and concatenated. The reward for action ``a`` is the fraction of
components matched, ``mean(a == t)``. Episodes last ``episode_length`` steps and end by
truncation (the observation carries no clock).

Returns with the defaults (``nvec = (3, 4, 5)``, ``episode_length = 10``):

- optimal: ``1.0`` per step, ``10.0`` per episode;
- uniform random policy: ``mean(1 / nvec) = (1/3 + 1/4 + 1/5) / 3 ~= 0.261`` per step,
  ``~= 2.61`` per episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


def random_return(nvec: Sequence[int], episode_length: int) -> float:
    """Expected episode return of a uniformly random policy."""
    return float(np.mean([1.0 / n for n in nvec]) * episode_length)


class MultiDiscreteTargetEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Copy the shown target into every component of the action.

    Observation: ``float32[sum(nvec)]``, the target one-hot per component.
    Action: ``MultiDiscrete(nvec)``.
    """

    metadata = {"render_modes": []}

    def __init__(self, nvec: Sequence[int] = (3, 4, 5), episode_length: int = 10) -> None:
        if len(nvec) == 0 or any(int(n) < 2 for n in nvec):
            raise ValueError(f"nvec needs at least one component, each >= 2, got {nvec}")
        if episode_length < 1:
            raise ValueError(f"episode_length must be positive, got {episode_length}")
        self.nvec = np.asarray(nvec, dtype=np.int64)
        self.episode_length = int(episode_length)
        self._offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]])
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(int(self.nvec.sum()),), dtype=np.float32
        )
        self.action_space = spaces.MultiDiscrete(self.nvec)
        self._target = np.zeros(len(self.nvec), dtype=np.int64)
        self._t = 0

    def _draw_target(self) -> None:
        self._target = self.np_random.integers(0, self.nvec)

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        obs[self._offsets + self._target] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._draw_target()
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.int64).reshape(self.nvec.shape)
        matched = action == self._target
        reward = float(matched.mean())
        self._t += 1
        self._draw_target()
        truncated = self._t >= self.episode_length
        return self._observation(), reward, False, truncated, {"matched": int(matched.sum())}
