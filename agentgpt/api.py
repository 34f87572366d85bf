"""The Python one-liner: ``AgentGPT.train("CartPole-v1")``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgpt.serve.client import GPTAPI

__all__ = ["GPTAPI", "AgentGPT"]


class AgentGPT:
    """Entry points for training and loading GPT-policy agents from Python."""

    @staticmethod
    def train(
        env_id: str,
        *,
        resume: bool = False,
        env_hosts: int = 0,
        env_urls: Sequence[str] = (),
        fleet: Any = None,
        callbacks: Sequence[Any] = (),
        **overrides: Any,
    ):
        """Train on ``env_id`` with default hyperparameters, any of which can be overridden
        by keyword (``AgentGPT.train("LunarLander-v3", total_steps=1_000_000)``).

        ``env_hosts=2`` runs the envs on two env servers started on this machine;
        ``env_urls=[...]`` (with ``api_key=``, or ``AGENTGPT_API_KEY``) on servers that
        already run. ``fleet`` takes the full :class:`~agentgpt.hosts.fleet.FleetOptions`
        instead (envs per host, timeouts). ``envs`` passes ready-made vector envs (or a
        :class:`~agentgpt.remote.fleet.Fleet`). ``callbacks`` are training callbacks
        (:class:`~agentgpt.train.callbacks.Callback`): run after every update and every
        periodic evaluation (``eval_every=N``), able to stop the run early.

        Returns the :class:`~agentgpt.train.run.RunResult` (its ``run_dir`` holds the
        checkpoint, metrics and TensorBoard logs).
        """
        from agentgpt.envs import PETTINGZOO_ENVS
        from agentgpt.hosts.fleet import FleetOptions
        from agentgpt.train.hyperparameters import Hyperparameters
        from agentgpt.train.run import claim_run, run_dir_of, saved_total_steps, train

        show_progress = overrides.pop("show_progress", None)
        envs = overrides.pop("envs", None)
        api_key = overrides.pop("api_key", None)
        if fleet is None and (env_hosts or env_urls):
            fleet = FleetOptions(env_urls=list(env_urls), env_hosts=env_hosts, api_key=api_key)
        if envs is not None and fleet is not None:
            raise ValueError("pass either envs or env hosts, not both")
        if resume and "total_steps" not in overrides and overrides.get("run_name"):
            # A resumed run keeps its own budget unless total_steps extends it.
            runs_dir = overrides.get("runs_dir", Hyperparameters.runs_dir)
            total = saved_total_steps(runs_dir, overrides["run_name"])
            if total is not None:
                overrides["total_steps"] = total
        hparams = claim_run(Hyperparameters.from_dict({"env_id": env_id, **overrides}))
        with contextlib.ExitStack() as stack:
            if fleet is not None:
                envs = stack.enter_context(_open_fleet(hparams, fleet, run_dir_of(hparams)))
            return train(
                hparams,
                resume=resume,
                envs=envs,
                show_progress=show_progress,
                callbacks=callbacks,
                team_envs=PETTINGZOO_ENVS,
            )

    @staticmethod
    def load(run_dir: str | Path):
        """Load a trained :class:`~agentgpt.agent.agent.Agent` from a run directory."""
        from agentgpt.agent.checkpoint import load_agent

        return load_agent(run_dir)


def _open_fleet(hparams: Any, options: Any, run_dir: Path) -> Any:
    """The env servers ``options`` describe, as a fleet of the run's envs."""
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.hosts.fleet import open_fleet

    return open_fleet(
        hparams.env_id,
        options,
        num_envs=hparams.num_envs,
        seed=hparams.seed,
        env_kwargs=hparams.env_kwargs,
        register=PETTINGZOO_ENVS,
        log_dir=run_dir / "env-hosts",
    )
