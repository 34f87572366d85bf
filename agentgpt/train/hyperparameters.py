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

# Every default below is read from its part, so each default value is written once.
_ENV, _MODEL, _PPO, _RUN = EnvSpec(), ModelConfig(), PPOConfig(), RunConfig()


@dataclass
class Hyperparameters:
    """Every field of a run's configs, flat; saved with every checkpoint. Fields are
    documented, defaulted and validated on the part they belong to (a test checks that
    this list and the parts' fields are the same)."""

    # EnvSpec
    env_id: str = _ENV.env_id
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # RunConfig (the part most runs change)
    seed: int = _RUN.seed
    total_steps: int = _RUN.total_steps
    num_envs: int = _RUN.num_envs
    # PPOConfig
    rollout_steps: int = _PPO.rollout_steps
    num_minibatches: int = _PPO.num_minibatches
    epochs: int = _PPO.epochs
    gamma: float = _PPO.gamma
    gae_lambda: float = _PPO.gae_lambda
    learning_rate: float = _PPO.learning_rate
    clip_range: float = _PPO.clip_range
    vf_coef: float = _PPO.vf_coef
    max_grad_norm: float = _PPO.max_grad_norm
    ent_coef: float = _PPO.ent_coef
    # ModelConfig
    num_layers: int = _MODEL.num_layers
    d_model: int = _MODEL.d_model
    num_heads: int = _MODEL.num_heads
    dropout: float = _MODEL.dropout
    max_input_states: int = _MODEL.max_input_states
    num_input_states: int = _MODEL.num_input_states
    # PPOConfig: windows, automatic tuning, control value
    train_window: int | None = _PPO.train_window
    window_stride: int | None = _PPO.window_stride
    normalize_obs: bool = _PPO.normalize_obs
    obs_clip: float = _PPO.obs_clip
    scale_rewards: bool = _PPO.scale_rewards
    reward_clip: float = _PPO.reward_clip
    normalize_advantages: bool = _PPO.normalize_advantages
    anneal_lr: bool = _PPO.anneal_lr
    kl_early_stop: bool = _PPO.kl_early_stop
    target_kl: float = _PPO.target_kl
    adapt_entropy: bool = _PPO.adapt_entropy
    target_entropy_start: float = _PPO.target_entropy_start
    target_entropy_end: float = _PPO.target_entropy_end
    ent_coef_lr: float = _PPO.ent_coef_lr
    ent_coef_max: float = _PPO.ent_coef_max
    control_random_prob: float = _PPO.control_random_prob
    # RunConfig: infrastructure, reporting, evaluation
    vectorization_mode: str = _RUN.vectorization_mode
    overlap_updates: bool = _RUN.overlap_updates
    run_name: str | None = _RUN.run_name
    runs_dir: str = _RUN.runs_dir
    checkpoint_every: int = _RUN.checkpoint_every
    torch_threads: int = _RUN.torch_threads
    wandb: bool = _RUN.wandb
    wandb_project: str = _RUN.wandb_project
    eval_every: int = _RUN.eval_every
    eval_episodes: int = _RUN.eval_episodes

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
