"""Reward scaling during training (saved in every checkpoint so a resumed run continues
with the same scale; a trained agent does not need it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from agentgpt.agent.normalization import RunningMeanStd

__all__ = ["RewardScaler"]


class RewardScaler:
    """Divides rewards by the running std of the discounted return (per env).

    Keeps value targets near unit scale whatever the env's reward magnitude, which is
    what lets one learning rate and one ``vf_coef`` work across tasks.
    """

    def __init__(
        self, num_envs: int, gamma: float, clip: float = 10.0, enabled: bool = True
    ) -> None:
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, np.float64)
        self.gamma = gamma
        self.clip = clip
        self.enabled = enabled

    def __call__(self, rewards: np.ndarray, dones: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Scale one step of rewards; ``active`` marks envs that really stepped."""
        if not self.enabled:
            return rewards.astype(np.float32)
        self.returns = np.where(active, self.returns * self.gamma + rewards, self.returns)
        self.rms.update(self.returns[active])
        self.returns[dones] = 0.0
        scaled = rewards / np.sqrt(self.rms.var + 1e-8)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {**self.rms.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.returns = np.asarray(state["returns"], np.float64).copy()
