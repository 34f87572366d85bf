"""GPTPolicy: a decoder-only transformer that acts from the last K observations.

Each timestep becomes one token: the observation encoding plus a projection of the
control value. A causal transformer mixes the tokens of one context; a value head and
an action head read every position, so a K-step window trains K samples in one pass.

Position information is a learned relative position embedding: every attention head
adds a learned bias per distance (0 .. K-1 steps back). A token's features then do not
depend on where it sits in the window, so a policy trained on windows whose contexts
hold 1..K steps acts the same from the rolling K-step window it is deployed with.
(Absolute learned position embeddings made the trained output depend on the context
length; such a policy swung Pendulum up from short contexts but failed from full ones.)

Three ways to feed it, all giving the same output for the same observations in context:

* :meth:`GPTPolicy.forward` takes packed sequences with ``starts`` flags (training: a
  window of a rollout whose episodes may begin mid-window).
* :meth:`GPTPolicy.forward_with_past` extends cached keys/values by new steps
  (collection, through :class:`~agentgpt.policy.slots.SlotContexts`: only the new
  tokens are computed).
* :meth:`GPTPolicy.forward_window` takes one left-padded window per env with a
  ``valid`` mask and reads the last position (acting, evaluation, ONNX export);
  :meth:`GPTPolicy.deterministic_action_window` is its traceable deterministic form.

:class:`agentgpt.policy.slots.SlotContexts` keeps one cached context per env, for
collection from envs that are each at their own step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch
from torch import nn

from agentgpt.policy.distributions import ActionDistribution, PaddedCategoricalLayout
from agentgpt.policy.encoders import ObservationEncoder, ObsTensors
from agentgpt.policy.spaces import ActionCodec, ObservationCodec
from agentgpt.policy.transformer import (
    Block,
    KeyValues,
    distances,
    segment_mask,
    window_mask,
)


class PolicyOutput(NamedTuple):
    dist: ActionDistribution
    values: torch.Tensor


class GPTPolicy(nn.Module):
    """Actor-critic causal transformer for any supported observation/action space.

    ``max_input_states`` fixes the size of the position table; ``num_input_states``
    (K) is the context used for training and acting and may be lowered at inference
    with :meth:`set_num_input_states`, down to 1, without retraining.
    """

    def __init__(
        self,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        *,
        num_layers: int = 2,
        d_model: int = 64,
        num_heads: int = 4,
        dropout: float = 0.0,
        max_input_states: int = 16,
        num_input_states: int = 16,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "num_layers": num_layers,
            "d_model": d_model,
            "num_heads": num_heads,
            "dropout": dropout,
            "max_input_states": max_input_states,
            "num_input_states": num_input_states,
        }
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_codec = ObservationCodec(observation_space)
        self.action_codec = ActionCodec(action_space)
        self.max_input_states = max_input_states
        self.num_input_states = 0
        self.set_num_input_states(num_input_states)

        self.encoder = ObservationEncoder(self.obs_codec, d_model)
        self.control = nn.Linear(1, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, dropout, max_input_states) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        codec = self.action_codec
        self.policy_head = nn.Linear(d_model, codec.num_logits + codec.continuous_dim)
        self.value_head = nn.Linear(d_model, 1)
        self.log_std = nn.Parameter(torch.zeros(codec.continuous_dim))
        self.layout = PaddedCategoricalLayout(codec.discrete_sizes)
        low = np.where(codec.bounded, codec.low, -1.0)
        high = np.where(codec.bounded, codec.high, 1.0)
        self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))
        self.register_buffer("action_bounded", torch.as_tensor(codec.bounded))
        self._init_weights()

    # ------------------------------------------------------------------ setup
    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        # A near-uniform initial policy and unit-scale values are what PPO expects.
        nn.init.orthogonal_(self.policy_head.weight, gain=0.01)
        nn.init.orthogonal_(self.value_head.weight, gain=1.0)

    def set_num_input_states(self, k: int) -> None:
        """Change the context length K used by acting and training (1..max)."""
        if not 1 <= k <= self.max_input_states:
            raise ValueError(f"num_input_states must be in [1, {self.max_input_states}], got {k}")
        self.num_input_states = int(k)

    # ---------------------------------------------------------------- forward
    def _trunk(
        self,
        obs: ObsTensors,
        control: torch.Tensor,
        allowed: torch.Tensor,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Hidden states ``[B, T, D]``; with ``last_only`` the last position's ``[B, D]``,
        which the last block then computes for that position alone. ``control`` is
        ``[B, T]``, or ``[B, 1]`` for one value per row."""
        distance = distances(allowed.shape[-1], self.max_input_states, allowed.device)
        x = self.encoder(obs) + self.control(control.unsqueeze(-1))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, _ = block(x, allowed, distance, last_only=last_only and i == last)
        return self.ln_f(x[:, -1] if last_only else x)

    def _heads(
        self, hidden: torch.Tensor, action_mask: torch.Tensor | None
    ) -> tuple[ActionDistribution, torch.Tensor]:
        out = self.policy_head(hidden)
        n = self.action_codec.num_logits
        dist = ActionDistribution(
            self.layout, out[..., :n], out[..., n:], self.log_std, action_mask
        )
        return dist, self.value_head(hidden).squeeze(-1)

    def forward(
        self,
        obs: ObsTensors,
        starts: torch.Tensor,
        control: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> PolicyOutput:
        """Outputs at every position of packed sequences ``[B, T]``.

        ``starts`` (bool ``[B, T]``) marks where a context begins; ``control`` is
        ``[B, T]``; ``action_mask`` optional ``bool[B, T, num_logits]``. With
        ``last_only`` only the last position is read out (collection), and
        ``action_mask`` is ``bool[B, num_logits]``.
        """
        hidden = self._trunk(obs, control, segment_mask(starts), last_only)
        return PolicyOutput(*self._heads(hidden, action_mask))

    def forward_with_past(
        self,
        obs: ObsTensors,
        control: torch.Tensor,
        allowed: torch.Tensor,
        distance: torch.Tensor,
        past: Sequence[KeyValues] | None,
        action_mask: torch.Tensor | None = None,
    ) -> tuple[PolicyOutput, list[KeyValues]]:
        """Run new tokens ``[B, Tn]`` against cached keys/values and read the last one.

        The caller owns the context layout, so each way of caching contexts (one shared
        cache, or per-env slots at different lengths) decides what attends to what:
        ``past`` holds one ``(keys, values)`` pair ``[B, heads, Tp, head_dim]`` per layer;
        ``allowed`` is bool ``[B, Tn, Tp + Tn]`` over those ``Tp`` cached tokens followed
        by the new ones; ``distance`` is ``[Tn, Tp + Tn]`` (shared) or ``[B, Tn, Tp + Tn]``
        (per row), already clamped into the bias table. Returns the output at the last
        new token and every layer's keys/values of the cached plus new tokens.
        """
        x = self.encoder(obs) + self.control(control.unsqueeze(-1))
        presents = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, present = block(
                x, allowed, distance, None if past is None else past[i], last_only=i == last
            )
            presents.append(present)
        hidden = self.ln_f(x[:, -1])
        return PolicyOutput(*self._heads(hidden, action_mask)), presents

    def forward_window(
        self,
        obs: ObsTensors,
        valid: torch.Tensor,
        control: torch.Tensor,
        action_mask: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """Outputs for the LAST position of left-padded windows ``[B, K]``.

        ``valid`` (bool ``[B, K]``) is True for real timesteps of the current episode;
        ``control`` is ``[B]``; ``action_mask`` optional ``bool[B, num_logits]``.
        """
        # One control value per window: its embedding is added to every token by
        # broadcasting, not computed once per token.
        hidden = self._trunk(obs, control.unsqueeze(1), window_mask(valid), last_only=True)
        return PolicyOutput(*self._heads(hidden, action_mask))

    def deterministic_action_window(
        self, obs: torch.Tensor, valid_mask: torch.Tensor, control: torch.Tensor
    ) -> torch.Tensor:
        """Deterministic action for the last position of flat-vector observation windows.

        ``obs``: float32 ``[B, K, obs_dim]``, already normalized; ``valid_mask``: bool
        ``[B, K]`` (left padding allowed); ``control``: float32 ``[B]``. Returns env-ready
        actions: ``int64[B]`` for Discrete, ``int64[B, n]`` for MultiDiscrete/MultiBinary,
        float32 ``[B, *shape]`` (scaled into the bounds) for Box, and for hybrid spaces a
        float32 ``[B, n_discrete + n_continuous]`` row of the discrete indices followed by
        the continuous values (see :meth:`flat_action_to_env`). Traceable for ONNX export;
        control is an input to the network only, no random actions are mixed in.
        """
        batch, steps = valid_mask.shape
        empty = torch.zeros(batch, steps, 0, dtype=torch.long, device=obs.device)
        out = self.forward_window(ObsTensors(obs, empty, []), valid_mask, control)
        disc, cont = out.dist.mode()
        return self.env_action_tensor(disc, cont)

    def env_action_tensor(self, disc: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Policy-layout actions to the tensor form :meth:`deterministic_action_window`
        returns (scaled, clipped, offset by ``start``)."""
        space = self.action_space
        scaled = torch.where(
            self.action_bounded,
            self.action_low
            + (cont.clamp(-1.0, 1.0) + 1.0) * 0.5 * (self.action_high - self.action_low),
            cont,
        )
        if isinstance(space, gymnasium.spaces.Discrete):
            return disc[..., 0] + int(space.start)
        if isinstance(space, gymnasium.spaces.MultiDiscrete):
            start = torch.as_tensor(np.asarray(space.start).reshape(-1), device=disc.device)
            return (disc + start).reshape(*disc.shape[:-1], *space.shape)
        if isinstance(space, gymnasium.spaces.MultiBinary):
            return disc.reshape(*disc.shape[:-1], *space.shape)
        if isinstance(space, gymnasium.spaces.Box):
            return scaled.reshape(*scaled.shape[:-1], *space.shape)
        return torch.cat([disc.to(scaled.dtype), scaled], dim=-1)

    def flat_action_to_env(self, flat: np.ndarray) -> Any:
        """Convert a batch of hybrid-space outputs of :meth:`deterministic_action_window`
        (discrete indices then continuous values, already scaled) to env actions."""
        codec = self.action_codec
        flat = np.asarray(flat)
        disc = np.rint(flat[:, : codec.num_discrete]).astype(np.int64)
        cont = flat[:, codec.num_discrete :].astype(np.float64)
        b = codec.bounded
        normalized = cont.copy()
        normalized[:, b] = (cont[:, b] - codec.low[b]) / (codec.high[b] - codec.low[b]) * 2.0 - 1.0
        return codec.to_env(disc, normalized)

    def build_kwargs(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy (spaces included) from a checkpoint."""
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            **self.config,
            "num_input_states": self.num_input_states,
        }
