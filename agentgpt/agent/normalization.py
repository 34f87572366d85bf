"""Running statistics, and the observation normalizer that is part of a trained agent.

The observation statistics must travel with the model (an exported ONNX graph bakes them
in, and the inference server feeds them), so they live with the agent, not the trainer.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    """Mean and variance over every sample seen (parallel Welford update, float64)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        if batch.shape[0] == 0:
            return
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], np.float64).copy()
        self.var = np.asarray(state["var"], np.float64).copy()
        self.count = float(state["count"])


class ObsNormalizer:
    """Normalizes the vector part of observations: ``clip((x - mean) / sqrt(var + eps))``.

    ``mean``, ``var``, ``clip`` and ``epsilon`` are the exact numbers :meth:`normalize`
    uses, so other runtimes (ONNX, a game engine) can reproduce it. When disabled it is
    the identity (mean 0, var 1 - epsilon, no clipping).
    """

    def __init__(
        self, dim: int, clip: float = 10.0, epsilon: float = 1e-8, enabled: bool = True
    ) -> None:
        self.rms = RunningMeanStd((dim,))
        self.clip = float(clip) if enabled else float("inf")
        self.epsilon = float(epsilon)
        self.enabled = enabled

    @property
    def mean(self) -> np.ndarray:
        return self.rms.mean if self.enabled else np.zeros_like(self.rms.mean)

    @property
    def var(self) -> np.ndarray:
        return self.rms.var if self.enabled else np.full_like(self.rms.var, 1.0 - self.epsilon)

    def update(self, vector: np.ndarray) -> None:
        if self.enabled and vector.shape[-1]:
            self.rms.update(vector.reshape(-1, vector.shape[-1]))

    def normalize(self, vector: np.ndarray) -> np.ndarray:
        """Normalize float vectors ``[..., dim]`` with the current statistics."""
        vector = np.asarray(vector, np.float32)
        if not self.enabled or vector.shape[-1] == 0:
            return vector
        scaled = (vector - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.rms.state_dict(),
            "clip": self.clip,
            "epsilon": self.epsilon,
            "enabled": self.enabled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])
        self.enabled = bool(state["enabled"])
