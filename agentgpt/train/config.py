"""The trainer's two configs: how PPO learns (:class:`PPOConfig`) and how a run is
organised (:class:`RunConfig`).

Together with the agent's :class:`~agentgpt.agent.config.ModelConfig` and the env
description :class:`~agentgpt.core.env_spec.EnvSpec` they make up a run; the flat
:class:`~agentgpt.train.hyperparameters.Hyperparameters` view joins all four for CLI
flags, YAML files and checkpoints.

The defaults are chosen to train the shipped and classic-control tasks without any flag
(CartPole-v1 to 475+ within 100k steps) at a speed comparable to an MLP PPO: many short
rollouts, trained on windows twice the acting context. Automatic tuning (the
``normalize_obs`` ... ``adapt_entropy`` switches) is on by default; the tuned values at
the end of a run are saved with the checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PPOConfig", "RunConfig"]


@dataclass(frozen=True)
class PPOConfig:
    """Everything the PPO update and the collection it trains on depend on."""

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

    #: Length of the windows the update trains on (and collection acts within); None
    #: means 2 x the model's num_input_states. Every position of a window is a sample, so
    #: a window trains contexts of 1 .. train_window steps and the K-step context an
    #: agent acts from sits inside that range rather than at its rarely trained edge.
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

    #: Control value: this fraction of training episodes plays at a control value drawn
    #: uniformly from [0, 1] (the rest at 1.0), mixing in uniformly random actions.
    control_random_prob: float = 0.25

    def window(self, num_input_states: int) -> int:
        """The training window in effect for a model acting from ``num_input_states``."""
        return 2 * num_input_states if self.train_window is None else self.train_window

    def stride(self, num_input_states: int) -> int:
        """The window stride in effect (``window_stride``, or the whole window)."""
        window = self.window(num_input_states)
        return window if self.window_stride is None else self.window_stride

    def check(self, num_input_states: int) -> None:
        """Raise ValueError unless rollouts split into windows for this context length."""
        window, stride = self.window(num_input_states), self.stride(num_input_states)
        if window < 1:
            raise ValueError("train_window must be positive")
        if not 1 <= stride <= window:
            raise ValueError("window_stride must be in [1, train_window]")
        if self.rollout_steps % stride or self.rollout_steps < window:
            raise ValueError(
                f"rollout_steps ({self.rollout_steps}) must be a multiple of the window "
                f"stride ({stride}) and at least the train window ({window})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunConfig:
    """Where a run lives, how long it lasts, how its envs run and what it reports."""

    seed: int = 1
    total_steps: int = 100_000
    num_envs: int = 16
    vectorization_mode: str = "sync"
    #: Run each PPO update while collection goes on with the previous weights, so envs
    #: never idle during updates. Faster where env servers run on other machines; every
    #: trained step is then about one update old (off-policy by one update), which can
    #: cost final return, so it is off by default.
    overlap_updates: bool = False
    run_name: str | None = None
    runs_dir: str = "runs"
    #: Save a checkpoint every this many updates (and always at the end).
    checkpoint_every: int = 10
    #: Torch CPU threads for the update (collection always uses one); 0 uses every core.
    torch_threads: int = 0
    wandb: bool = False
    wandb_project: str = "agentgpt"
    #: Evaluate the current policy every this many updates (0: never), deterministically
    #: on fresh local envs; callbacks see the result (``on_evaluation``).
    eval_every: int = 0
    #: Episodes per periodic evaluation (episode ``i`` resets with seed ``seed + i``).
    eval_episodes: int = 10

    def __post_init__(self) -> None:
        if self.vectorization_mode not in ("sync", "async"):
            raise ValueError("vectorization_mode must be 'sync' or 'async'")
        if self.eval_every < 0:
            raise ValueError("eval_every must be 0 (off) or positive")
        if self.eval_episodes < 1:
            raise ValueError("eval_episodes must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
