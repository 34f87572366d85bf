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

        ``fleet`` trains on env servers: a :class:`~agentgpt.train.fleet_setup.FleetOptions`
        (``FleetOptions(env_hosts=2)``, or ``FleetOptions(env_urls=[...], api_key=...)``).
        ``envs`` passes ready-made vector envs (or a :class:`~agentgpt.remote.fleet.Fleet`).

        Returns the :class:`~agentgpt.train.run.RunResult` (its ``run_dir`` holds the
        checkpoint, metrics and TensorBoard logs).
        """
        from agentgpt.train.hyperparameters import Hyperparameters
        from agentgpt.train.run import saved_total_steps, train

        show_progress = overrides.pop("show_progress", None)
        envs = overrides.pop("envs", None)
        fleet = overrides.pop("fleet", None)
        if resume and "total_steps" not in overrides and overrides.get("run_name"):
            # A resumed run keeps its own budget unless total_steps extends it.
            runs_dir = overrides.get("runs_dir", Hyperparameters.runs_dir)
            total = saved_total_steps(runs_dir, overrides["run_name"])
            if total is not None:
                overrides["total_steps"] = total
        hparams = Hyperparameters.from_dict({"env_id": env_id, **overrides})
        return train(hparams, resume=resume, envs=envs, fleet=fleet, show_progress=show_progress)

    @staticmethod
    def load(run_dir: str | Path):
        """Load a trained :class:`~agentgpt.train.agent.Agent` from a run directory."""
        from agentgpt.train.checkpoint import load_agent

        return load_agent(run_dir)
