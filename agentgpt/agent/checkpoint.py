"""Run directories and checkpoints.

A run directory ``runs/<name>/`` holds:

* ``checkpoint.pt``: model, optimizer, observation and reward statistics, the tuned
  coefficients, progress counters, RNG states and (when the vector env can be pickled,
  as local sync envs of pure-Python envs can) the envs themselves, so ``--resume``
  continues exactly where the run stopped;
* ``hyperparameters.yaml``: the run's hyperparameters; ``tuned.yaml``: the final values
  of everything automatic tuning changed;
* ``metrics.csv`` / ``timing.csv`` and ``tensorboard/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from agentgpt.agent.agent import Agent
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.policy.model import GPTPolicy
from agentgpt.train.hyperparameters import Hyperparameters

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a crash mid-write never leaves a broken checkpoint)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    Hyperparameters.from_dict(state["hyperparameters"]).to_yaml(run_dir / "hyperparameters.yaml")
    (run_dir / "tuned.yaml").write_text(yaml.safe_dump(state["tuned"], sort_keys=False))
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Spaces and numpy RNG states are pickled objects, so full unpickling is needed;
    # only load run directories you trust.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} has unsupported checkpoint format {state.get('format')}")
    return state


def build_policy(state: dict[str, Any]) -> GPTPolicy:
    policy = GPTPolicy(**state["policy_kwargs"])
    policy.load_state_dict(state["model"])
    return policy.eval()


def load_agent(run_dir: str | Path) -> Agent:
    """Load a trained agent (policy in eval mode plus its normalizer) from a run dir."""
    state = load_checkpoint(run_dir)
    policy = build_policy(state)
    normalizer = ObsNormalizer(policy.obs_codec.vector_dim)
    normalizer.load_state_dict(state["obs_normalizer"])
    return Agent(
        policy=policy,
        hyperparameters=Hyperparameters.from_dict(state["hyperparameters"]),
        obs_normalizer=normalizer,
        run_dir=Path(run_dir),
    )
