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

Checkpoints are read with ``torch.load(weights_only=True)``: besides tensors and plain
data, only the types in :func:`checkpoint_globals` (NumPy arrays, scalars, dtypes and
random generators, Gymnasium spaces, the trainer's episode records) are rebuilt, so a
file that carries any other pickled object (one that would run code as it loads) is
refused with :class:`CheckpointError`. Loading an agent (``eval``, ``export``) therefore
never runs code from the file. Resuming a run also restores the saved envs, a pickled blob
of the envs' own classes: resume only runs you trust.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
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

#: Types of the trainer's state that checkpoints hold, by the name they are pickled under,
#: with their fields. The trainer's process has their module loaded and gets them back as
#: they were; elsewhere (loading an agent, which does not use them) they are read as
#: :class:`TrainingRecord`.
TRAINING_RECORDS: dict[str, tuple[str, ...]] = {
    "agentgpt.train.rollout.EpisodeRecord": ("ret", "length", "control"),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely: it holds a pickled object outside
    :func:`checkpoint_globals`, or is not a checkpoint at all."""


class TrainingRecord:
    """A record of the trainer's state read where its own class is not loaded: its
    fields are plain attributes."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"TrainingRecord({fields})"


def _numpy_globals() -> list[Any]:
    from numpy.random import _pickle as random_pickle
    from numpy.random import bit_generator

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return [
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSUVOMm"},
        random_pickle.__generator_ctor,
        random_pickle.__bit_generator_ctor,
        random_pickle.__randomstate_ctor,
        np.random.Generator,
        np.random.RandomState,
        np.random.PCG64,
        np.random.PCG64DXSM,
        np.random.MT19937,
        np.random.Philox,
        np.random.SFC64,
        bit_generator.SeedSequence,
        bit_generator.__pyx_unpickle_SeedSequence,
    ]


def _record_type(path: str) -> tuple[Callable[..., Any], str]:
    module, _, name = path.rpartition(".")
    loaded = getattr(sys.modules.get(module), name, None)
    return (loaded if loaded is not None else TrainingRecord), path


def checkpoint_globals() -> list[Any]:
    """What a checkpoint may hold besides tensors and plain data: the entries of
    ``torch.serialization.safe_globals`` its loading uses."""
    spaces = [getattr(gymnasium.spaces, name) for name in gymnasium.spaces.__all__]
    return [
        bytes,
        *_numpy_globals(),
        *(space for space in spaces if isinstance(space, type)),
        *(_record_type(path) for path in TRAINING_RECORDS),
    ]


_LOADING = threading.Lock()


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
    """The state a checkpoint holds, read without running code from the file
    (:class:`CheckpointError` for a file that would need to)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        # torch keeps the allowed globals in one process-wide list that the context
        # manager sets and restores; loads in several threads at once must take turns.
        with _LOADING, torch.serialization.safe_globals(checkpoint_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects a checkpoint never holds, so it is not loaded (loading"
            f" them could run code): {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} has unsupported checkpoint format {found}")
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
