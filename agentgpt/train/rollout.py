"""Rollout collection from any ``gymnasium.vector.VectorEnv`` with NEXT_STEP autoreset.

Contexts during collection are the windows the update trains on (see
:func:`window_start`): an env's context at rollout step ``t`` holds its observations
since the later of its window's start and its episode start. Acting and training
therefore see exactly the same context for every sample, so the PPO ratio starts at 1,
and the update costs ``N / stride`` sequence passes for ``N`` steps.

NEXT_STEP autoreset: after ``terminated`` or ``truncated`` the env returns the final
observation, and its next ``step`` ignores the action and resets. That step's token
(the final observation) is stored but marked not ``valid``: it is never trained as a
decision, its reward is dropped, and its value is exactly the bootstrap a truncated
episode needs. The next token starts a new episode, so no context or GAE chain crosses
an episode end.

Env stepping (:meth:`RolloutCollector.env_step`) and batched policy inference
(:meth:`RolloutCollector.infer`) are separate methods so a remote, asynchronous vector
env can be driven the same way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import ContextCache, GPTPolicy
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.reward_scaling import RewardScaler


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


def autoreset_mode(envs: gymnasium.vector.VectorEnv) -> AutoresetMode:
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return AutoresetMode(mode) if isinstance(mode, str) else mode


class CollectorBase:
    """What both collectors share: the policy's codecs, the random streams that pick
    control values and random actions, and the finished-episode statistics."""

    def __init__(
        self,
        num_envs: int,
        policy: GPTPolicy,
        normalizer: ObsNormalizer,
        reward_scaler: RewardScaler,
        hparams: Hyperparameters,
    ) -> None:
        self.policy = policy
        self.normalizer = normalizer
        self.reward_scaler = reward_scaler
        self.hp = hparams
        self.num_envs = num_envs
        self.obs_codec = policy.obs_codec
        self.action_codec = policy.action_codec
        self.rng = np.random.default_rng(hparams.seed)
        self.generator = torch.Generator().manual_seed(hparams.seed)
        self.episodes: deque[EpisodeRecord] = deque(maxlen=100)
        self.total_episodes = 0

    def _draw_control(self, n: int) -> np.ndarray:
        draw_random = self.rng.random(n) < self.hp.control_random_prob
        return np.where(draw_random, self.rng.random(n), 1.0).astype(np.float32)

    def recent_returns(self, control: float | None = 1.0) -> list[float]:
        """Returns of recent finished episodes (only those played at ``control``)."""
        return [e.ret for e in self.episodes if control is None or e.control == control]


class RolloutCollector(CollectorBase):
    """Steps a vector env with the policy and fills :class:`Rollout` buffers."""

    def __init__(
        self,
        envs: gymnasium.vector.VectorEnv,
        policy: GPTPolicy,
        normalizer: ObsNormalizer,
        reward_scaler: RewardScaler,
        hparams: Hyperparameters,
    ) -> None:
        if autoreset_mode(envs) != AutoresetMode.NEXT_STEP:
            raise ValueError(
                "the trainer needs a vector env with NEXT_STEP autoreset "
                f"(got {autoreset_mode(envs)})"
            )
        super().__init__(envs.num_envs, policy, normalizer, reward_scaler, hparams)
        self.envs = envs
        self._obs: Any = None

    # ----------------------------------------------------------------- state
    def reset(self, seed: int) -> None:
        obs, info = self.envs.reset(seed=seed)
        n = self.num_envs
        self._obs = obs
        self._final = np.zeros(n, bool)  # the current obs is an episode's final obs
        self._episode_start = np.ones(n, bool)
        self._control = self._draw_control(n)
        self._mask = self._read_mask(info)
        self._ep_return = np.zeros(n, np.float64)
        self._ep_length = np.zeros(n, np.int64)

    def _read_mask(self, info: dict) -> np.ndarray | None:
        return self.action_codec.mask_from_info(info, self.num_envs)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the envs themselves, for exact resumption."""
        return {
            "obs": self._obs,
            "final": self._final.copy(),
            "episode_start": self._episode_start.copy(),
            "control": self._control.copy(),
            "mask": None if self._mask is None else self._mask.copy(),
            "ep_return": self._ep_return.copy(),
            "ep_length": self._ep_length.copy(),
            "episodes": list(self.episodes),
            "total_episodes": self.total_episodes,
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._obs = state["obs"]
        self._final = state["final"].copy()
        self._episode_start = state["episode_start"].copy()
        self._control = state["control"].copy()
        self._mask = None if state["mask"] is None else state["mask"].copy()
        self._ep_return = state["ep_return"].copy()
        self._ep_length = state["ep_length"].copy()
        self.episodes = deque(state["episodes"], maxlen=100)
        self.total_episodes = int(state["total_episodes"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])

    # -------------------------------------------------------------- pieces
    def encode(self, obs: Any, update_stats: bool) -> tuple[np.ndarray, np.ndarray, list]:
        """Encode raw env observations and normalize their vector part."""
        parts = self.obs_codec.encode(obs, self.num_envs)
        if update_stats:
            self.normalizer.update(parts.vector)
        return self.normalizer.normalize(parts.vector), parts.discrete, parts.images

    @torch.inference_mode()
    def infer(
        self,
        obs: ObsTensors,
        starts: torch.Tensor,
        control: torch.Tensor,
        mask: torch.Tensor | None,
        cache: ContextCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, ContextCache]:
        """Policy inference for a batch of envs: sample an action for the newest step.

        ``obs``, ``starts``, ``control`` are the steps ``[E, n, ...]`` not yet in
        ``cache`` (the envs' contexts so far). Returns ``(disc, cont, logp, value, cache)``.
        """
        out, cache = self.policy.forward_incremental(obs, starts, control, cache, mask)
        disc, cont = out.dist.sample(self.generator)
        return disc, cont, out.dist.log_prob(disc, cont), out.values, cache

    def env_step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every env once (the only place that talks to the vector env)."""
        obs, rewards, terminated, truncated, info = self.envs.step(actions)
        return (
            obs,
            np.asarray(rewards, np.float64),
            np.asarray(terminated, bool),
            np.asarray(truncated, bool),
            info,
        )

    # ------------------------------------------------------------- collect
    def collect(self, steps: int) -> Rollout:
        """Collect ``steps`` vector steps (a multiple of K) into a new rollout."""
        if self._obs is None:
            raise RuntimeError("call reset() before collect()")
        n, k, stride = self.num_envs, self.hp.window, self.hp.stride
        codec, acodec = self.obs_codec, self.action_codec
        vec = torch.zeros(n, steps, codec.vector_dim)
        dis = torch.zeros(n, steps, len(codec.discrete_sizes), dtype=torch.long)
        imgs = [torch.zeros(n, steps, *s, dtype=torch.uint8) for s in codec.image_shapes]
        starts = torch.zeros(n, steps, dtype=torch.bool)
        control = torch.zeros(n, steps)
        valid = torch.zeros(n, steps, dtype=torch.bool)
        from_policy = torch.zeros(n, steps, dtype=torch.bool)
        disc = torch.zeros(n, steps, acodec.num_discrete, dtype=torch.long)
        cont = torch.zeros(n, steps, acodec.continuous_dim)
        mask_buf = None
        logp = torch.zeros(n, steps)
        values = torch.zeros(n, steps)
        rewards = np.zeros((n, steps), np.float32)
        terminated = np.zeros((n, steps), bool)
        truncated = np.zeros((n, steps), bool)

        cache: ContextCache | None = None
        cache_lo = -1
        for t in range(steps):
            v, d, im = self.encode(self._obs, update_stats=True)
            vec[:, t] = torch.from_numpy(v)
            dis[:, t] = torch.from_numpy(d)
            for buf, frame in zip(imgs, im, strict=True):
                buf[:, t] = torch.from_numpy(frame)
            starts[:, t] = torch.from_numpy(self._episode_start | (t == 0))
            control[:, t] = torch.from_numpy(self._control)
            valid[:, t] = torch.from_numpy(~self._final)
            step_mask = None
            if self._mask is not None:
                if mask_buf is None:
                    mask_buf = torch.ones(n, steps, acodec.num_logits, dtype=torch.bool)
                step_mask = torch.from_numpy(self._mask)
                mask_buf[:, t] = step_mask

            lo = window_start(t, k, stride)
            if cache is None or cache_lo != lo:
                cache, cache_lo = None, lo  # a new context: compute it from its start
            new = slice(lo + (0 if cache is None else cache.length), t + 1)
            ctx = ObsTensors(vec[:, new], dis[:, new], [b[:, new] for b in imgs])
            a_disc, a_cont, a_logp, a_value, cache = self.infer(
                ctx, starts[:, new], control[:, new], step_mask, cache
            )
            np_disc, np_cont = a_disc.numpy().copy(), a_cont.numpy().copy()
            # The control mix: with probability 1 - c the env gets a uniformly random action.
            use_random = self.rng.random(n) >= self._control
            r_disc, r_cont = acodec.sample_random(self.rng, n, self._mask)
            np_disc[use_random] = r_disc[use_random]
            np_cont[use_random] = r_cont[use_random]
            disc[:, t] = torch.from_numpy(np_disc)
            cont[:, t] = torch.from_numpy(np_cont)
            from_policy[:, t] = torch.from_numpy(~use_random)
            logp[:, t] = a_logp
            values[:, t] = a_value

            obs, reward, term, trunc, info = self.env_step(acodec.to_env(np_disc, np_cont))
            active = ~self._final
            done = (term | trunc) & active
            reward = np.where(active, reward, 0.0)
            rewards[:, t] = self.reward_scaler(reward, done, active)
            terminated[:, t] = term & active
            truncated[:, t] = trunc & active & ~term
            self._ep_return += reward
            self._ep_length += active
            for i in np.flatnonzero(done):
                self.episodes.append(
                    EpisodeRecord(
                        float(self._ep_return[i]), int(self._ep_length[i]), float(self._control[i])
                    )
                )
                self.total_episodes += 1
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0

            restarted = self._final
            self._episode_start = restarted.copy()
            if restarted.any():
                self._control = np.where(restarted, self._draw_control(n), self._control).astype(
                    np.float32
                )
            self._final = done
            self._obs = obs
            self._mask = self._read_mask(info)

        last_value = self.bootstrap_value()
        return Rollout(
            obs=ObsTensors(vec, dis, imgs),
            starts=starts,
            control=control,
            valid=valid,
            from_policy=from_policy,
            disc=disc,
            cont=cont,
            mask=mask_buf,
            logp=logp,
            values=values,
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            last_value=last_value,
        )

    @torch.inference_mode()
    def bootstrap_value(self) -> np.ndarray:
        """Value of the current observations, each as a one-token context (which is the
        context the next rollout's first chunk gives them)."""
        v, d, im = self.encode(self._obs, update_stats=False)
        obs = ObsTensors(
            torch.from_numpy(v)[:, None],
            torch.from_numpy(d)[:, None],
            [torch.from_numpy(f)[:, None] for f in im],
        )
        n = self.num_envs
        out = self.policy(
            obs,
            torch.ones(n, 1, dtype=torch.bool),
            torch.from_numpy(self._control)[:, None],
            last_only=True,
        )
        return out.values.numpy().astype(np.float64)
