"""The Python one-liner: ``AgentGPT.train("CartPole-v1")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class AgentGPT:
    """Entry points for training and loading GPT-policy agents from Python."""

    @staticmethod
    def train(env_id: str, *, resume: bool = False, **overrides: Any):
        """Train on ``env_id`` with default hyperparameters, any of which can be overridden
        by keyword (``AgentGPT.train("LunarLander-v3", total_steps=1_000_000)``).

        Returns the :class:`~agentgpt.train.run.RunResult` (its ``run_dir`` holds the
        checkpoint, metrics and TensorBoard logs).
        """
        from agentgpt.train.hyperparameters import Hyperparameters
        from agentgpt.train.run import train

        show_progress = overrides.pop("show_progress", None)
        envs = overrides.pop("envs", None)
        hparams = Hyperparameters.from_dict({"env_id": env_id, **overrides})
        return train(hparams, resume=resume, envs=envs, show_progress=show_progress)

    @staticmethod
    def load(run_dir: str | Path):
        """Load a trained :class:`~agentgpt.train.agent.Agent` from a run directory."""
        from agentgpt.train.checkpoint import load_agent

        return load_agent(run_dir)
