"""Training hyperparameters: one dataclass built from Python, a YAML file or CLI flags.

The defaults are chosen to train the shipped and classic-control tasks without any
flag (CartPole-v1 to 475+ within 100k steps) at a speed comparable to an MLP PPO:
a small transformer (2 layers, d_model 64) acting from 16-step contexts, trained on
32-step windows, with many short rollouts. Automatic tuning (the
``normalize_obs`` ... ``adapt_entropy`` switches) is on by default; the tuned values
at the end of a run are saved with the checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Hyperparameters:
    """Everything a training run depends on; saved with every checkpoint."""

    env_id: str = "CartPole-v1"
    #: Keyword arguments for ``gymnasium.make_vec``'s env constructor.
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 1
    total_steps: int = 100_000
    num_envs: int = 16
    #: Steps per env per rollout; a multiple of the window stride, at least one window.
    rollout_steps: int = 64
    #: The training windows of a rollout are split into this many minibatches.
    num_minibatches: int = 2
    epochs: int = 8
    #: 0.995 rather than the usual 0.99: LunarLander-style tasks, where the payoff comes
    #: hundreds of steps later, need the longer horizon; short tasks still learn.
    gamma: float = 0.995
    gae_lambda: float = 0.95
    #: Annealed linearly to 0 when ``anneal_lr`` is on; 1e-3 learns CartPole faster but
    #: makes continuous control (Pendulum) collapse mid-run.
    learning_rate: float = 5e-4
    clip_range: float = 0.2
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    #: Entropy coefficient at the start; adapted when ``adapt_entropy`` is on.
    ent_coef: float = 0.0

    # Model
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    dropout: float = 0.0
    max_input_states: int = 16
    num_input_states: int = 16

    #: Length of the windows the update trains on (and collection acts within); None
    #: means 2 x num_input_states. Every position of a window is a sample, so a window
    #: trains contexts of 1 .. train_window steps and the K-step context an agent acts
    #: from sits inside that range rather than at its rarely trained edge.
    train_window: int | None = None
    #: Steps between consecutive training windows; each window trains its last
    #: ``window_stride`` positions, the steps before them are context only. The default
    #: (None = the whole window) gives N / train_window sequence passes for N steps.
    window_stride: int | None = None

    # Automatic tuning, each switchable.
    normalize_obs: bool = True
    obs_clip: float = 10.0
    scale_rewards: bool = True
    reward_clip: float = 10.0
    normalize_advantages: bool = True
    anneal_lr: bool = True
    #: Early-stop an update's epochs once approximate KL exceeds 1.5x this.
    kl_early_stop: bool = True
    target_kl: float = 0.02
    #: Adapt the entropy coefficient so entropy stays above a target that decays
    #: linearly from ``target_entropy_start`` to ``target_entropy_end`` (fractions of
    #: the maximum entropy for discrete parts, Gaussian std for continuous ones).
    adapt_entropy: bool = True
    target_entropy_start: float = 0.3
    target_entropy_end: float = 0.0
    ent_coef_lr: float = 0.01
    ent_coef_max: float = 0.05

    # Control value: this fraction of training episodes plays at a control value drawn
    # uniformly from [0, 1] (the rest at 1.0), mixing in uniformly random actions.
    control_random_prob: float = 0.25

    # Infrastructure
    vectorization_mode: str = "sync"
    #: On env servers only: run each PPO update while collection goes on with the
    #: previous weights, so servers never idle during updates. Faster where servers run
    #: on other machines; every trained step is then about one update old (off-policy
    #: by one update), which can cost final return, so it is off by default.
    overlap_updates: bool = False
    run_name: str | None = None
    runs_dir: str = "runs"
    #: Save a checkpoint every this many updates (and always at the end).
    checkpoint_every: int = 10
    #: Torch CPU threads for the update (collection always uses one); 0 uses every core.
    torch_threads: int = 0
    wandb: bool = False
    wandb_project: str = "agentgpt"

    def __post_init__(self) -> None:
        if self.num_input_states > self.max_input_states:
            raise ValueError("num_input_states must not exceed max_input_states")
        if self.window < 1:
            raise ValueError("train_window must be positive")
        if not 1 <= self.stride <= self.window:
            raise ValueError("window_stride must be in [1, train_window]")
        if self.rollout_steps % self.stride or self.rollout_steps < self.window:
            raise ValueError(
                f"rollout_steps ({self.rollout_steps}) must be a multiple of the window "
                f"stride ({self.stride}) and at least the train window ({self.window})"
            )
        if self.vectorization_mode not in ("sync", "async"):
            raise ValueError("vectorization_mode must be 'sync' or 'async'")

    @property
    def window(self) -> int:
        """The training window length in effect (``train_window``, or 2 K)."""
        return 2 * self.num_input_states if self.train_window is None else self.train_window

    @property
    def stride(self) -> int:
        """The window stride in effect (``window_stride``, or the whole window)."""
        return self.window if self.window_stride is None else self.window_stride

    @property
    def batch_steps(self) -> int:
        """Env steps collected per update."""
        return self.num_envs * self.rollout_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hyperparameters:
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
