"""PPO with GAE over windows of steps, plus the automatic tuning of its coefficients.

The update gathers a rollout ``[E, T]`` into windows of ``train_window`` steps (2 K by
default), one every ``stride`` steps (by default the whole window), and trains the last
``stride`` positions of every window in one pass (sequence packing), so its cost is
``N / stride`` transformer passes for ``N`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy
from agentgpt.train.config import PPOConfig
from agentgpt.train.replicas import Replicas
from agentgpt.train.rollout import Rollout, window_start


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    last_value: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns for env-major arrays ``[E, T]``.

    A terminated step has no bootstrap; a truncated step bootstraps from the value of
    the next token, which under NEXT_STEP autoreset is the episode's final observation.
    Invalid tokens (final observations) get zero advantage and cut the GAE chain.
    """
    n, steps = rewards.shape
    adv = np.zeros((n, steps), np.float64)
    running = np.zeros(n, np.float64)
    for t in range(steps - 1, -1, -1):
        next_value = values[:, t + 1] if t + 1 < steps else last_value
        ended = terminated[:, t] | truncated[:, t]
        bootstrap = np.where(terminated[:, t], 0.0, gamma * next_value)
        delta = rewards[:, t] + bootstrap - values[:, t]
        running = np.where(ended, delta, delta + gamma * lam * running)
        running = np.where(valid[:, t], running, 0.0)
        adv[:, t] = running
    return adv, adv + values


@dataclass
class UpdateStats:
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    epochs: float
    minibatches: int


def window_layout(steps: int, k: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices ``[W, K]`` of each training window of a ``steps``-long rollout and
    the mask ``[W, K]`` of the positions each window trains (see ``window_start``)."""
    index, trained = [], []
    for w in range(steps // stride):
        first = w * stride
        lo = window_start(first, k, stride)
        idx = torch.arange(lo, lo + k)
        index.append(idx)
        trained.append((idx >= first) & (idx < first + stride))
    return torch.stack(index), torch.stack(trained)


def training_windows(
    rollout: Rollout, k: int, stride: int, **extra: torch.Tensor
) -> dict[str, Any]:
    """Gather a rollout ``[E, T, ...]`` into windows ``[E * W, K, ...]``.

    ``extra`` holds more ``[E, T]`` tensors (advantages, returns) to gather alike. The
    result's ``trained`` mask marks the positions that are samples; every step of the
    rollout is trained in exactly one window.
    """
    n, steps = rollout.valid.shape
    index, trained = window_layout(steps, k, stride)
    windows = index.shape[0]

    def gather(x: torch.Tensor) -> torch.Tensor:
        out = x[:, index]  # [E, W, K, ...]
        return out.reshape(n * windows, k, *x.shape[2:])

    seq: dict[str, Any] = {
        "vector": gather(rollout.obs.vector),
        "discrete": gather(rollout.obs.discrete),
        "images": [gather(im) for im in rollout.obs.images],
        "starts": gather(rollout.starts),
        "control": gather(rollout.control),
        "valid": gather(rollout.valid),
        "from_policy": gather(rollout.from_policy),
        "disc": gather(rollout.disc),
        "cont": gather(rollout.cont),
        "logp": gather(rollout.logp),
        "values": gather(rollout.values),
        "mask": None if rollout.mask is None else gather(rollout.mask),
        "trained": trained.repeat(n, 1),
    }
    seq["starts"][:, 0] = True
    for name, value in extra.items():
        seq[name] = gather(value)
    return seq


def ppo_update(
    policy: GPTPolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: np.ndarray,
    returns: np.ndarray,
    hp: PPOConfig,
    ent_coef: float,
    generator: torch.Generator,
    replicas: Replicas | None = None,
) -> UpdateStats:
    """Several epochs of clipped PPO over the rollout's windows (their length and stride
    resolved for the policy's context length).

    With several ``replicas`` each computes gradients on its own rollout and they are
    averaged before every optimizer step; the replicas also agree on the number of
    minibatches, on the KL that may stop the epochs early, and on the returned
    statistics, so their weights stay identical."""
    replicas = replicas or Replicas()
    k = hp.window(policy.num_input_states)
    seq = training_windows(
        rollout,
        k,
        hp.stride(policy.num_input_states),
        adv=torch.as_tensor(advantages, dtype=torch.float32),
        ret=torch.as_tensor(returns, dtype=torch.float32),
    )
    seq["valid"] = seq["valid"] & seq["trained"]
    seq["policy"] = seq["valid"] & seq["from_policy"]
    images, mask = seq["images"], seq["mask"]

    if hp.normalize_advantages:
        sel = seq["policy"]
        if sel.sum() > 1:
            a = seq["adv"][sel]
            seq["adv"] = (seq["adv"] - a.mean()) / (a.std() + 1e-8)

    num_seq = seq["vector"].shape[0]
    per_batch = max(1, num_seq // hp.num_minibatches)
    # Every replica must take the same number of steps, or one would wait forever for
    # the others' gradients: replicas with more windows leave the surplus untrained.
    batches, _ = replicas.bounds(num_seq // per_batch)
    totals = {"pl": 0.0, "vl": 0.0, "ent": 0.0, "kl": 0.0, "cf": 0.0}
    count = 0
    stop = False
    epochs_done = 0.0
    policy.train()
    for epoch in range(hp.epochs):
        order = torch.randperm(num_seq, generator=generator)
        for first in range(0, batches * per_batch, per_batch):
            idx = order[first : first + per_batch]
            obs = ObsTensors(seq["vector"][idx], seq["discrete"][idx], [im[idx] for im in images])
            out = policy(
                obs, seq["starts"][idx], seq["control"][idx], None if mask is None else mask[idx]
            )
            valid = seq["valid"][idx].float()
            pol = seq["policy"][idx].float()
            n_valid, n_pol = valid.sum().clamp(min=1.0), pol.sum().clamp(min=1.0)
            new_logp = out.dist.log_prob(seq["disc"][idx], seq["cont"][idx])
            log_ratio = (new_logp - seq["logp"][idx]) * pol
            ratio = log_ratio.exp()
            adv = seq["adv"][idx]
            surrogate = torch.minimum(
                ratio * adv, ratio.clamp(1 - hp.clip_range, 1 + hp.clip_range) * adv
            )
            policy_loss = -(surrogate * pol).sum() / n_pol
            value_loss = 0.5 * ((out.values - seq["ret"][idx]).pow(2) * valid).sum() / n_valid
            entropy = (out.dist.entropy() * valid).sum() / n_valid
            loss = policy_loss + hp.vf_coef * value_loss - ent_coef * entropy

            with torch.no_grad():
                approx_kl = float((((ratio - 1) - log_ratio) * pol).sum() / n_pol)
                clipped = ((ratio - 1).abs() > hp.clip_range).float()
                totals["cf"] += float((clipped * pol).sum() / n_pol)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The KL travels with the gradients, so every replica stops at the same step.
            (approx_kl,) = replicas.average_gradients(policy.parameters(), [approx_kl])
            torch.nn.utils.clip_grad_norm_(policy.parameters(), hp.max_grad_norm, foreach=True)
            optimizer.step()
            totals["pl"] += float(policy_loss.detach())
            totals["vl"] += float(value_loss.detach())
            totals["ent"] += float(entropy.detach())
            totals["kl"] += approx_kl
            count += 1
            if hp.kl_early_stop and approx_kl > 1.5 * hp.target_kl:
                stop = True
                break
        epochs_done = epoch + (1.0 if not stop else first / max(num_seq, 1))
        if stop:
            break
    policy.eval()

    valid_np = rollout.valid.numpy()
    y, pred = returns[valid_np], rollout.values.numpy()[valid_np]
    var_y = float(np.var(y)) if y.size else 0.0
    explained = float("nan") if var_y == 0 else 1.0 - float(np.var(y - pred)) / var_y
    c = max(count, 1)
    known = 0.0 if math.isnan(explained) else 1.0
    pl, vl, ent, cf, ev, known = replicas.mean(
        [
            totals["pl"] / c,
            totals["vl"] / c,
            totals["ent"] / c,
            totals["cf"] / c,
            explained if known else 0.0,
            known,
        ]
    )
    return UpdateStats(
        policy_loss=pl,
        value_loss=vl,
        entropy=ent,
        approx_kl=totals["kl"] / c,
        clip_fraction=cf,
        explained_variance=ev / known if known else float("nan"),
        epochs=epochs_done,
        minibatches=count,
    )


class EntropyTuner:
    """Adapts the entropy coefficient so policy entropy stays above a decaying target.

    The target is a fraction ``f`` of the largest entropy for categorical parts
    (``f * sum(log n)``) and, for continuous dims, the entropy of a Gaussian with std
    ``f`` in the policy's normalized action units. ``f`` moves linearly from
    ``target_entropy_start`` to ``target_entropy_end`` over training. Below target the
    coefficient grows, above it shrinks toward 0: a floor on exploration, never a push
    toward more randomness than the target.
    """

    def __init__(self, policy: GPTPolicy, hp: PPOConfig) -> None:
        self.hp = hp
        self.coef = hp.ent_coef
        self.discrete_max = float(sum(math.log(n) for n in policy.action_codec.discrete_sizes))
        self.continuous_dim = policy.action_codec.continuous_dim

    def target(self, progress: float) -> float:
        hp = self.hp
        frac = hp.target_entropy_start + (hp.target_entropy_end - hp.target_entropy_start) * min(
            max(progress, 0.0), 1.0
        )
        target = frac * self.discrete_max
        if self.continuous_dim:
            std = max(frac, 1e-6)
            target += self.continuous_dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(std))
        return target

    def update(self, entropy: float, progress: float) -> float:
        if self.hp.adapt_entropy:
            error = self.target(progress) - entropy
            self.coef = float(
                np.clip(self.coef + self.hp.ent_coef_lr * error, 0.0, self.hp.ent_coef_max)
            )
        return self.coef
