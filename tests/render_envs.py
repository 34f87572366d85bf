"""An env whose ``render()`` raises, shared by the server's and the clients' render tests."""

from __future__ import annotations

from typing import Any

import gymnasium
from gymnasium import spaces

__all__ = ["UnrenderableEnv"]


class UnrenderableEnv(gymnasium.Env):
    """Steps fine (observation 1, reward 1.0), but its ``render()`` raises."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    observation_space = spaces.Discrete(2)
    action_space = spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        return 1, 1.0, False, False, {}

    def render(self) -> Any:
        raise RuntimeError("this env has no camera")
