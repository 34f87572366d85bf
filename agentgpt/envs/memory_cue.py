"""``agentgpt/MemoryCue-v0``: a recall task that needs more than the current observation.

Why it exists: it separates a policy that decides from a window of past observations
(``num_input_states`` K > 1) from a memoryless one (K = 1, an MLP). Nothing in the
observation at the query step says which answer is right; only the first observation of
the episode does.

Episode, with ``num_cues = n`` and ``delay = d``:

- step 0 (the observation from ``reset``): the cue, one of ``n`` values, shown one-hot;
- the next ``d`` observations are blank (all zeros);
- the last observation has the "query now" flag set. The action taken on it is judged:
  reward ``+1`` if it equals the cue, ``wrong_reward`` (default ``0``) otherwise, and the
  episode terminates. Actions before the query are ignored and earn nothing.

An episode is therefore ``d + 2`` steps long; with the default ``d = 4`` a context of
6 observations covers it, well inside the default K = 16.

Returns (``wrong_reward = 0``):

- optimal, remembering the cue: ``1.0`` every episode;
- best memoryless policy: at the query step every episode looks the same, so it can do
  no better than guessing, expected ``1 / n`` (``0.5`` with the default ``n = 2``).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class MemoryCueEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Recall a cue seen ``delay + 1`` steps earlier.

    Observation: ``float32[num_cues + 1]``, the cue one-hot followed by the query flag.
    Action: ``Discrete(num_cues)``, the answer (only read at the query step).
    """

    metadata = {"render_modes": []}

    def __init__(self, num_cues: int = 2, delay: int = 4, wrong_reward: float = 0.0) -> None:
        if num_cues < 2:
            raise ValueError(f"num_cues must be at least 2, got {num_cues}")
        if delay < 0:
            raise ValueError(f"delay must be non-negative, got {delay}")
        self.num_cues = int(num_cues)
        self.delay = int(delay)
        self.wrong_reward = float(wrong_reward)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_cues + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_cues)
        self._cue = 0
        self._t = 0

    @property
    def query_step(self) -> int:
        """Index of the step whose action is judged (0 is the cue step)."""
        return self.delay + 1

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        if self._t == self.query_step:
            obs[-1] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.num_cues))
        self._t = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t > self.query_step:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        if self._t == self.query_step:
            correct = int(action) == self._cue
            self._t += 1
            obs = np.zeros(self.num_cues + 1, dtype=np.float32)
            reward = 1.0 if correct else self.wrong_reward
            return obs, reward, True, False, {"correct": correct, "cue": self._cue}
        self._t += 1
        return self._observation(), 0.0, False, False, {}
