"""The layout of a rollout: what the collector fills and the PPO update trains on.

Contexts during collection are the windows the update trains on (see
:func:`window_start`): a slot's context at row step ``t`` holds its observations since
the later of its window's start and its episode start. Acting and training therefore see
exactly the same context for every sample, so the PPO ratio starts at 1, and the update
costs ``N / stride`` sequence passes for ``N`` steps.

Under NEXT_STEP autoreset the token after an episode's last step is its final
observation: stored but marked not ``valid`` (never trained as a decision, its reward
dropped, its value exactly the bootstrap a truncated episode needs). The next token
starts a new episode, so no context or GAE chain crosses an episode end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agentgpt.policy.encoders import ObsTensors


@dataclass
class Rollout:
    """One rollout, env-major ``[E, T, ...]`` so K-step chunks are contiguous."""

    obs: ObsTensors
    starts: torch.Tensor  # bool: an episode begins here (or the rollout does)
    control: torch.Tensor  # float: the episode's control value
    valid: torch.Tensor  # bool: a real decision (False on final-observation tokens)
    from_policy: torch.Tensor  # bool: the action came from the policy, not the random mix
    disc: torch.Tensor
    cont: torch.Tensor
    mask: torch.Tensor | None
    logp: torch.Tensor
    values: torch.Tensor
    rewards: np.ndarray  # scaled
    terminated: np.ndarray
    truncated: np.ndarray
    last_value: np.ndarray  # value of the observation after the last step


@dataclass
class EpisodeRecord:
    ret: float
    length: int
    control: float


def window_start(t: int, k: int, stride: int) -> int:
    """First step of the context that step ``t`` is acted on and trained with.

    Training windows of ``k`` steps start every ``stride`` steps; each trains its last
    ``stride`` positions, the ones before are context only. Step ``t`` belongs to window
    ``t // stride``, so its context starts ``k - stride`` steps before that window's
    trained part (or at the rollout's first step).
    """
    return max(0, (t // stride) * stride - (k - stride))
