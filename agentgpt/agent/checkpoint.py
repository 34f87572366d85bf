"""Run directories and checkpoints.

A run directory ``runs/<name>/`` holds:

* ``checkpoint.pt``: model, optimizer, observation and reward statistics, the tuned
  coefficients, progress counters, RNG states and (when the envs can be pickled, as
  local sync envs of pure-Python envs can) the envs and the collector's rows in
  progress, so ``--resume`` continues exactly where the run stopped;
* ``hyperparameters.yaml``: the run's hyperparameters, flat (every field of its env,
  model, PPO and run configs); ``tuned.yaml``: the final values of everything automatic
  tuning changed;
* ``metrics.csv`` / ``timing.csv`` and ``tensorboard/``.

This module reads and writes the flat ``hyperparameters`` mapping as plain data: an
agent needs only its model config (rebuilt from the policy's own arguments) and its env
description, never the trainer's classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from agentgpt.agent.agent import Agent
from agentgpt.agent.config import ModelConfig
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.env_spec import EnvSpec
from agentgpt.policy.model import GPTPolicy

CHECKPOINT_FILE = "checkpoint.pt"
#: 2: the saved envs are a local adapter's state (format 1 pickled a vector env's own
#: fields); both load, a format-1 run resumes on fresh envs.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a crash mid-write never leaves a broken checkpoint)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    (run_dir / "hyperparameters.yaml").write_text(
        yaml.safe_dump(state["hyperparameters"], sort_keys=False)
    )
    (run_dir / "tuned.yaml").write_text(yaml.safe_dump(state["tuned"], sort_keys=False))
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Spaces and numpy RNG states are pickled objects, so full unpickling is needed;
    # only load run directories you trust.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") not in READABLE_FORMATS:
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
        model=model_config(state),
        env=EnvSpec.from_dict(state["hyperparameters"]),
        obs_normalizer=normalizer,
        run_dir=Path(run_dir),
    )


def model_config(state: dict[str, Any]) -> ModelConfig:
    """The model config a checkpoint's policy was built with."""
    kwargs = state["policy_kwargs"]
    return ModelConfig.from_dict({name: kwargs[name] for name in ModelConfig.__dataclass_fields__})
