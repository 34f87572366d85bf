"""A trained agent and its actor: what evaluation, export and games use.

The actor keeps each env's rolling window of its last K observations (left-padded at
an episode's start), exactly the input the exported ONNX model takes, and reads the
action at the last position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from agentgpt.agent.config import ModelConfig
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.env_spec import EnvSpec
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy


@dataclass
class Agent:
    """A trained policy (eval mode) with the statistics needed to feed it, the shape it
    was built with and the env it was trained on (which evaluation makes again)."""

    policy: GPTPolicy
    model: ModelConfig
    env: EnvSpec
    obs_normalizer: ObsNormalizer
    run_dir: Path | None = None

    @property
    def observation_space(self) -> gymnasium.Space:
        return self.policy.observation_space

    @property
    def action_space(self) -> gymnasium.Space:
        return self.policy.action_space

    def make_actor(
        self,
        num_envs: int,
        num_input_states: int | None = None,
        control: float = 1.0,
        deterministic: bool = True,
        seed: int = 0,
    ) -> Actor:
        """An actor for ``num_envs`` parallel envs.

        ``num_input_states`` lowers the context K (default: the trained K). ``control``
        in [0, 1] is fed to the network and, with probability ``1 - control`` per step,
        replaces the action with a uniformly random one: 0.0 plays randomly, 1.0 plays
        at full skill. ``seed`` seeds that mixing and stochastic sampling.
        """
        k = num_input_states or self.policy.num_input_states
        if not 1 <= k <= self.policy.max_input_states:
            raise ValueError(f"num_input_states must be in [1, {self.policy.max_input_states}]")
        if not 0.0 <= control <= 1.0:
            raise ValueError("control must be in [0, 1]")
        return Actor(self.policy, self.obs_normalizer, num_envs, k, control, deterministic, seed)


class Actor:
    """Acts for a batch of envs from rolling K-observation windows."""

    def __init__(
        self,
        policy: GPTPolicy,
        normalizer: ObsNormalizer,
        num_envs: int,
        num_input_states: int,
        control: float,
        deterministic: bool,
        seed: int,
    ) -> None:
        self.policy = policy
        self.normalizer = normalizer
        self.num_envs = num_envs
        self.k = num_input_states
        self.control = float(control)
        self.deterministic = deterministic
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        codec = policy.obs_codec
        self.vector = torch.zeros(num_envs, self.k, codec.vector_dim)
        self.discrete = torch.zeros(num_envs, self.k, len(codec.discrete_sizes), dtype=torch.long)
        self.images = [
            torch.zeros(num_envs, self.k, *s, dtype=torch.uint8) for s in codec.image_shapes
        ]
        self.valid = torch.zeros(num_envs, self.k, dtype=torch.bool)

    def reset(self) -> None:
        """Forget every env's context."""
        self.valid.zero_()

    @torch.inference_mode()
    def act(
        self,
        observations: Any,
        episode_starts: np.ndarray,
        action_mask: np.ndarray | None = None,
    ) -> Any:
        """Actions for one batch of observations (structured like a vector env's).

        ``episode_starts`` (bool ``[num_envs]``) clears an env's context before its
        observation is added; ``action_mask`` (bool ``[num_envs, num_choices]``) limits
        discrete choices.
        """
        parts = self.policy.obs_codec.encode(observations, self.num_envs)
        starts = torch.as_tensor(np.asarray(episode_starts, dtype=bool))
        self.valid[starts] = False
        self._push(self.vector, torch.from_numpy(self.normalizer.normalize(parts.vector)))
        self._push(self.discrete, torch.from_numpy(parts.discrete))
        for buf, frames in zip(self.images, parts.images, strict=True):
            self._push(buf, torch.from_numpy(frames))
        self._push(self.valid, torch.ones(self.num_envs, dtype=torch.bool))

        control = torch.full((self.num_envs,), self.control)
        mask = None if action_mask is None else torch.as_tensor(action_mask, dtype=torch.bool)
        out = self.policy.forward_window(
            ObsTensors(self.vector, self.discrete, self.images), self.valid, control, mask
        )
        disc, cont = out.dist.mode() if self.deterministic else out.dist.sample(self.generator)
        disc, cont = disc.numpy().copy(), cont.numpy().copy()
        codec = self.policy.action_codec
        codec.mix_random(self.rng, disc, cont, self.control, action_mask)
        return codec.to_env(disc, cont)

    @staticmethod
    def _push(window: torch.Tensor, latest: torch.Tensor) -> None:
        """Shift a ``[E, K, ...]`` window left by one step and put ``latest`` last."""
        window[:, :-1] = window[:, 1:].clone()
        window[:, -1] = latest
