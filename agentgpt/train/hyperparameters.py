"""``Hyperparameters``: the flat view of a run's four configs, for flags, YAML and checkpoints.

A run is described by :class:`~agentgpt.core.env_spec.EnvSpec` (which env),
:class:`~agentgpt.agent.config.ModelConfig` (the policy's shape),
:class:`~agentgpt.train.config.PPOConfig` (how it learns) and
:class:`~agentgpt.train.config.RunConfig` (where and how long). Command-line flags,
``--config`` YAML files and the ``hyperparameters`` of a checkpoint are one flat mapping
of every field; this class is that mapping, with the parts as properties
(:attr:`env`, :attr:`model`, :attr:`ppo`, :attr:`run`) and :meth:`from_parts` back.
Field names are unique across the parts, so the flat view loses nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentgpt.agent.config import ModelConfig
from agentgpt.core.env_spec import EnvSpec
from agentgpt.train.config import PPOConfig, RunConfig

__all__ = ["Hyperparameters"]


@dataclass
class Hyperparameters:
    """Every field of a run's configs, flat; saved with every checkpoint. Fields are
    documented on the part they belong to."""

    # EnvSpec
    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # RunConfig (the part most runs change)
    seed: int = 1
    total_steps: int = 100_000
    num_envs: int = 16
    # PPOConfig
    rollout_steps: int = 64
    num_minibatches: int = 2
    epochs: int = 8
    gamma: float = 0.995
    gae_lambda: float = 0.95
    learning_rate: float = 5e-4
    clip_range: float = 0.2
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    ent_coef: float = 0.0
    # ModelConfig
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    dropout: float = 0.0
    max_input_states: int = 16
    num_input_states: int = 16
    # PPOConfig: windows, automatic tuning, control value
    train_window: int | None = None
    window_stride: int | None = None
    normalize_obs: bool = True
    obs_clip: float = 10.0
    scale_rewards: bool = True
    reward_clip: float = 10.0
    normalize_advantages: bool = True
    anneal_lr: bool = True
    kl_early_stop: bool = True
    target_kl: float = 0.02
    adapt_entropy: bool = True
    target_entropy_start: float = 0.3
    target_entropy_end: float = 0.0
    ent_coef_lr: float = 0.01
    ent_coef_max: float = 0.05
    control_random_prob: float = 0.25
    # RunConfig: infrastructure, reporting, evaluation
    vectorization_mode: str = "sync"
    overlap_updates: bool = False
    run_name: str | None = None
    runs_dir: str = "runs"
    checkpoint_every: int = 10
    torch_threads: int = 0
    wandb: bool = False
    wandb_project: str = "agentgpt"
    eval_every: int = 0
    eval_episodes: int = 10

    def __post_init__(self) -> None:
        # Building the parts validates every field where it belongs.
        self.ppo.check(self.model.num_input_states)
        _ = self.run

    # ------------------------------------------------------------------ parts
    @property
    def env(self) -> EnvSpec:
        return EnvSpec(self.env_id, dict(self.env_kwargs))

    @property
    def model(self) -> ModelConfig:
        return _part(ModelConfig, self)

    @property
    def ppo(self) -> PPOConfig:
        return _part(PPOConfig, self)

    @property
    def run(self) -> RunConfig:
        return _part(RunConfig, self)

    @classmethod
    def from_parts(
        cls, env: EnvSpec, model: ModelConfig, ppo: PPOConfig, run: RunConfig
    ) -> Hyperparameters:
        return cls(**env.to_dict(), **model.to_dict(), **ppo.to_dict(), **run.to_dict())

    # ---------------------------------------------------------- derived values
    @property
    def window(self) -> int:
        """The training window length in effect (``train_window``, or 2 K)."""
        return self.ppo.window(self.num_input_states)

    @property
    def stride(self) -> int:
        """The window stride in effect (``window_stride``, or the whole window)."""
        return self.ppo.stride(self.num_input_states)

    @property
    def batch_steps(self) -> int:
        """Env steps collected per update."""
        return self.num_envs * self.rollout_steps

    # ------------------------------------------------------------- flat forms
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hyperparameters:
        """From a flat mapping; fields it lacks (such as those added since an old
        checkpoint was written) keep their defaults."""
        unknown = set(data) - set(cls.field_names())
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Hyperparameters:
        """Load from a YAML mapping; ``overrides`` win over the file."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must contain a mapping of hyperparameters")
        return cls.from_dict({**data, **overrides})

    def replace(self, **changes: Any) -> Hyperparameters:
        return dataclasses.replace(self, **changes)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _part(kind: type, flat: Hyperparameters) -> Any:
    return kind(**{f.name: getattr(flat, f.name) for f in dataclasses.fields(kind)})
