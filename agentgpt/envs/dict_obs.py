"""``agentgpt/DictObs-v0``: reach a goal corner, seen through a ``Dict`` observation.

Why it exists: observations from games are rarely one flat vector. This env pairs a
continuous part with a categorical part in one ``Dict`` so that wire formats, remote
clients and the policy's per-part encoders are exercised on a real, checkable env.

Observation ``Dict({"position": Box(-1, 1, (2,)), "goal": Discrete(4)})``: the agent's
position on the square, and which of the four corners ``(+-0.75, +-0.75)`` is the goal.
Action ``Discrete(5)``: stay, +x, -x, +y, -y, each a move of ``0.25`` (clipped to the
square). Each step costs ``-0.05``; reaching the goal (within ``0.125`` on both axes)
gives ``+1`` and terminates. Episodes are truncated after ``max_steps`` (default 20).

Starts are on the move grid, so the goal is reached exactly. A shortest path needs at
most 14 moves, so the optimal return is at least ``1 - 14 * 0.05 = 0.30`` and about
``0.67`` on average; a uniformly random policy seldom reaches the goal in 20 steps and
averages about ``-0.85``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

_GOALS = np.array([[0.75, 0.75], [-0.75, 0.75], [-0.75, -0.75], [0.75, -0.75]], dtype=np.float32)
_MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32) * 0.25
_REACHED = 0.125
_STEP_COST = 0.05


class DictObsEnv(gymnasium.Env[dict, np.int64]):
    """Walk to the goal corner named by the ``goal`` part of the observation."""

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 20) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = int(max_steps)
        self.observation_space = spaces.Dict(
            {
                "position": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                "goal": spaces.Discrete(len(_GOALS)),
            }
        )
        self.action_space = spaces.Discrete(len(_MOVES))
        self._position = np.zeros(2, dtype=np.float32)
        self._goal = 0
        self._t = 0

    def _observation(self) -> dict[str, Any]:
        return {"position": self._position.copy(), "goal": self._goal}

    def _at_goal(self) -> bool:
        return bool(np.all(np.abs(self._position - _GOALS[self._goal]) <= _REACHED))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self._goal = int(self.np_random.integers(len(_GOALS)))
        # Start on the move grid and away from the goal, so every episode needs moves.
        while True:
            cells = self.np_random.integers(-4, 5, size=2)
            self._position = (cells * 0.25).astype(np.float32)
            if not self._at_goal():
                break
        self._t = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        move = _MOVES[int(action)]
        self._position = np.clip(self._position + move, -1.0, 1.0).astype(np.float32)
        self._t += 1
        reached = self._at_goal()
        reward = (1.0 if reached else 0.0) - _STEP_COST
        truncated = not reached and self._t >= self.max_steps
        return self._observation(), reward, reached, truncated, {}
