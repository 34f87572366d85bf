"""``agentgpt/HybridTarget-v0``: a hybrid (discrete + continuous) action must hit a target.

Why it exists: game actions are often "which move" plus "how much". This env needs both
halves of a ``Dict`` action right at once, so it tests a composite action head (a
categorical and a Gaussian trained together from one reward).

Each step the observation shows a fresh target: a choice ``c`` in ``[0, num_choices)``
(one-hot) and an amount ``m`` uniform in ``[-1, 1]``. For the action
``{"choice": k, "amount": [x]}`` the reward is

    0.5 * (k == c)  +  0.5 * max(0, 1 - |x - m|)

so each part is worth half and a near miss on the amount still earns something. Episodes
last ``episode_length`` steps and end by truncation.

Returns with the defaults (``num_choices = 3``, ``episode_length = 10``):

- optimal: ``1.0`` per step, ``10.0`` per episode;
- uniform random policy (``action_space.sample()``): ``0.5 / num_choices + 0.5 * 5/12``
  per step (for ``x`` and ``m`` independent and uniform on ``[-1, 1]``,
  ``E[max(0, 1 - |x - m|)] = 5/12``), i.e. ``0.375`` per step and ``3.75`` per episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

#: Expected per-step value of ``max(0, 1 - |x - m|)`` for independent uniform x, m on [-1, 1].
_UNIFORM_AMOUNT_SCORE = 5.0 / 12.0


def random_return(num_choices: int, episode_length: int) -> float:
    """Expected episode return of a uniformly random policy."""
    return (0.5 / num_choices + 0.5 * _UNIFORM_AMOUNT_SCORE) * episode_length


class HybridTargetEnv(gymnasium.Env[np.ndarray, dict]):
    """Pick the shown choice and the shown amount.

    Observation: ``float32[num_choices + 1]``, the target choice one-hot, then the target
    amount. Action: ``Dict({"choice": Discrete(num_choices), "amount": Box(-1, 1, (1,))})``.
    """

    metadata = {"render_modes": []}

    def __init__(self, num_choices: int = 3, episode_length: int = 10) -> None:
        if num_choices < 2:
            raise ValueError(f"num_choices must be at least 2, got {num_choices}")
        if episode_length < 1:
            raise ValueError(f"episode_length must be positive, got {episode_length}")
        self.num_choices = int(num_choices)
        self.episode_length = int(episode_length)
        low = np.zeros(self.num_choices + 1, dtype=np.float32)
        low[-1] = -1.0
        self.observation_space = spaces.Box(low, 1.0, dtype=np.float32)
        self.action_space = spaces.Dict(
            {
                "choice": spaces.Discrete(self.num_choices),
                "amount": spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            }
        )
        self._choice = 0
        self._amount = 0.0
        self._t = 0

    def _draw_target(self) -> None:
        self._choice = int(self.np_random.integers(self.num_choices))
        self._amount = float(self.np_random.uniform(-1.0, 1.0))

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_choices + 1, dtype=np.float32)
        obs[self._choice] = 1.0
        obs[-1] = self._amount
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._draw_target()
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        choice_right = int(action["choice"]) == self._choice
        amount = float(
            np.clip(np.asarray(action["amount"], dtype=np.float64).reshape(-1)[0], -1, 1)
        )
        amount_score = max(0.0, 1.0 - abs(amount - self._amount))
        reward = 0.5 * float(choice_right) + 0.5 * amount_score
        self._t += 1
        self._draw_target()
        truncated = self._t >= self.episode_length
        info = {"choice_right": choice_right, "amount_score": amount_score}
        return self._observation(), reward, False, truncated, info
