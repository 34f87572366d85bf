"""The training loop: collect, compute GAE, update, tune, report, checkpoint.

:func:`train` is the one entry point; the CLI (``agentgpt train``) and
``AgentGPT.train`` both call it.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from agentgpt.agent.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.errors import EnvsUnavailable as FleetDownError
from agentgpt.core.registration import register_namespace
from agentgpt.policy.model import GPTPolicy
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.ppo import EntropyTuner, UpdateStats, compute_gae, ppo_update
from agentgpt.train.reporting import Reporter
from agentgpt.train.reward_scaling import RewardScaler
from agentgpt.train.rollout import RolloutCollector


def is_fleet(envs: Any) -> bool:
    """Whether ``envs`` offers the asynchronous ``recv``/``send`` API of a Fleet."""
    return callable(getattr(envs, "recv", None)) and callable(getattr(envs, "send", None))


@dataclass
class RunResult:
    """What a finished run leaves behind (an interrupted one raises
    :class:`TrainingInterrupted` instead)."""

    run_dir: Path
    global_step: int
    updates: int
    #: The last row written to ``metrics.csv``.
    metrics: dict[str, Any] = field(default_factory=dict)


def default_run_name(hp: Hyperparameters) -> str:
    env = re.sub(r"[^A-Za-z0-9_.-]+", "-", hp.env_id).strip("-")
    return f"{env}_s{hp.seed}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _claim_new_name(runs_dir: Path, base: str) -> str:
    """Create a fresh run directory (``base``, ``base-2``, ...) atomically."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        name = base if attempt == 1 else f"{base}-{attempt}"
        try:
            (runs_dir / name).mkdir()
        except FileExistsError:
            continue
        return name
    raise RuntimeError(f"could not find a free run name under {runs_dir}")


def make_envs(hp: Hyperparameters) -> gymnasium.vector.VectorEnv:
    """Local vector env for ``hp.env_id`` (NEXT_STEP autoreset, Gymnasium's default)."""
    register_namespace(hp.env_id)
    return gymnasium.make_vec(
        hp.env_id,
        num_envs=hp.num_envs,
        vectorization_mode=hp.vectorization_mode,
        **hp.env_kwargs,
    )


_SYNC_STATE = (
    "_env_obs",
    "_observations",
    "_rewards",
    "_terminations",
    "_truncations",
    "_autoreset_envs",
)


def _pickle_sync_envs(envs: gymnasium.vector.VectorEnv) -> bytes | None:
    """The sub-envs and step state of a local sync vector env, or None when they cannot
    be pickled (native handles such as Box2D worlds, or other vector env kinds)."""
    if not isinstance(envs, gymnasium.vector.SyncVectorEnv):
        return None
    try:
        return pickle.dumps(
            {"envs": envs.envs, **{name: getattr(envs, name) for name in _SYNC_STATE}}
        )
    except Exception:
        return None


def _restore_sync_envs(envs: gymnasium.vector.VectorEnv, blob: bytes) -> None:
    state = pickle.loads(blob)
    for env in envs.envs:
        env.close()
    envs.envs = state.pop("envs")
    for name, value in state.items():
        setattr(envs, name, value)


def _seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Owns every object of a run; :meth:`run` trains until ``total_steps``."""

    def __init__(
        self,
        hp: Hyperparameters,
        run_dir: Path,
        envs: gymnasium.vector.VectorEnv | None = None,
        resume_state: dict[str, Any] | None = None,
    ) -> None:
        self.hp = hp
        self.run_dir = run_dir
        # Collection runs many tiny forward passes, which extra threads only slow down;
        # the update's larger batches use every core.
        self.update_threads = hp.torch_threads or os.cpu_count() or 1
        _seed_everything(hp.seed)

        self.owns_envs = envs is None
        self.envs = envs if envs is not None else make_envs(hp)
        self._restored_envs = False
        if resume_state is not None and resume_state.get("envs") is not None and self.owns_envs:
            _restore_sync_envs(self.envs, resume_state["envs"])
            self._restored_envs = True
        self.policy = GPTPolicy(
            self.envs.single_observation_space,
            self.envs.single_action_space,
            num_layers=hp.num_layers,
            d_model=hp.d_model,
            num_heads=hp.num_heads,
            dropout=hp.dropout,
            max_input_states=hp.max_input_states,
            num_input_states=hp.num_input_states,
        ).eval()
        # The fused kernel updates every parameter in one call: with ~40 small tensors,
        # per-tensor Adam ops cost more than the arithmetic.
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=hp.learning_rate, eps=1e-5, fused=True
        )
        self.normalizer = ObsNormalizer(
            self.policy.obs_codec.vector_dim, clip=hp.obs_clip, enabled=hp.normalize_obs
        )
        self.reward_scaler = RewardScaler(
            self.envs.num_envs, hp.gamma, clip=hp.reward_clip, enabled=hp.scale_rewards
        )
        self.asynchronous = is_fleet(self.envs)
        #: The network collection acts with. With ``overlap_updates`` on a fleet it is a
        #: copy of ``policy``, refreshed after each update, so envs keep stepping while
        #: the update runs.
        self.actor = self.policy
        self.overlap = self.asynchronous and hp.overlap_updates
        if self.asynchronous:
            from agentgpt.train.fleet_rollout import FleetCollector

            if self.overlap:
                self.actor = copy.deepcopy(self.policy).eval()
            self.collector: RolloutCollector | FleetCollector = FleetCollector(
                self.envs, self.actor, self.normalizer, self.reward_scaler, hp
            )
        else:
            self.collector = RolloutCollector(
                self.envs, self.policy, self.normalizer, self.reward_scaler, hp
            )
        self.tuner = EntropyTuner(self.policy, hp)
        self.generator = torch.Generator().manual_seed(hp.seed + 1)
        self.batch_steps = self.envs.num_envs * hp.rollout_steps
        self.num_updates = max(1, hp.total_steps // self.batch_steps)
        self.update = 0
        self.global_step = 0
        self.lr = hp.learning_rate
        self._envs_picklable = (
            hp.vectorization_mode == "sync" and self.owns_envs and not self.asynchronous
        )

        if resume_state is None:
            self.collector.reset(seed=hp.seed)
        else:
            self._load(resume_state)
        self._boundary = self._snapshot()

    # ---------------------------------------------------------- state
    def _snapshot(self) -> dict[str, Any]:
        """Everything needed to continue from the current update boundary (in memory;
        written on the checkpoint schedule and on Ctrl-C)."""
        envs_blob = None
        if self._envs_picklable:
            envs_blob = _pickle_sync_envs(self.envs)
            self._envs_picklable = envs_blob is not None
        return copy.deepcopy(
            {
                "hyperparameters": self.hp.to_dict(),
                "policy_kwargs": self.policy.build_kwargs(),
                "model": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "obs_normalizer": self.normalizer.state_dict(),
                "reward_scaler": self.reward_scaler.state_dict(),
                "collector": self.collector.state_dict() if envs_blob is not None else None,
                "envs": envs_blob,
                "train_generator": self.generator.get_state(),
                "tuned": {
                    "ent_coef": float(self.tuner.coef),
                    "learning_rate": float(self.lr),
                    "obs_mean": self.normalizer.mean.tolist(),
                    "obs_var": self.normalizer.var.tolist(),
                    "reward_var": float(self.reward_scaler.rms.var),
                },
                "progress": {"update": self.update, "global_step": self.global_step},
            }
        )

    def _load(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["model"])
        if self.actor is not self.policy:
            self.actor.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.normalizer.load_state_dict(state["obs_normalizer"])
        self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.generator.set_state(state["train_generator"])
        self.tuner.coef = float(state["tuned"]["ent_coef"])
        self.lr = float(state["tuned"]["learning_rate"])
        self.update = int(state["progress"]["update"])
        self.global_step = int(state["progress"]["global_step"])
        if self._restored_envs and state.get("collector") is not None:
            self.collector.load_state_dict(state["collector"])
        else:
            # Envs could not be saved: continue on freshly reset ones.
            self.collector.reset(seed=self.hp.seed + 7919 * self.update)

    def save(self) -> Path:
        return save_checkpoint(self.run_dir, self._boundary)

    # ----------------------------------------------------------- loop
    def run(self, show_progress: bool | None = None) -> RunResult:
        hp = self.hp
        reporter = Reporter(
            self.run_dir,
            total_steps=self.num_updates * self.batch_steps,
            start_step=self.global_step,
            resume_update=self.update if self.update else None,
            config=hp.to_dict(),
            use_wandb=hp.wandb,
            wandb_project=hp.wandb_project,
            show_progress=show_progress,
        )
        last_row: dict[str, Any] = {}
        interrupted = False
        started = time.perf_counter()
        start_step = self.global_step
        try:
            while self.update < self.num_updates:
                last_row = self._one_update(reporter, started, start_step)
                self._boundary = self._snapshot()
                if self.update % hp.checkpoint_every == 0 or self.update == self.num_updates:
                    self.save()
        except KeyboardInterrupt:
            interrupted = True
            self.save()
        except FleetDownError as exc:
            self.save()
            saved_step = int(self._boundary["progress"]["global_step"])
            raise EnvHostsUnavailable(str(exc), self.run_dir, saved_step) from exc
        finally:
            reporter.close()
            if self.owns_envs:
                self.envs.close()
        if interrupted:
            saved_step = int(self._boundary["progress"]["global_step"])
            raise TrainingInterrupted(self.run_dir, saved_step)
        return RunResult(self.run_dir, self.global_step, self.update, last_row)

    def _update_while_collecting(
        self, rollout: Any, adv: np.ndarray, ret: np.ndarray
    ) -> UpdateStats:
        """Run the PPO update in a thread while the main thread keeps the fleet stepping
        with the current actor (rows acted now are one update old when trained; PPO's
        ratio uses the probabilities they were sampled with). The actor takes the new
        weights once the update is done."""
        outcome: dict[str, Any] = {}

        def learn() -> None:
            try:
                outcome["stats"] = ppo_update(
                    self.policy,
                    self.optimizer,
                    rollout,
                    adv,
                    ret,
                    self.hp,
                    self.tuner.coef,
                    self.generator,
                )
            except BaseException as exc:  # re-raised on the main thread
                outcome["error"] = exc

        learner = threading.Thread(target=learn, name="ppo-update", daemon=True)
        learner.start()
        try:
            self.collector.collect_while(learner.is_alive)
        finally:
            learner.join()
        if "error" in outcome:
            raise outcome["error"]
        self.actor.load_state_dict(self.policy.state_dict())
        return outcome["stats"]

    def _one_update(self, reporter: Reporter, started: float, start_step: int) -> dict[str, Any]:
        hp = self.hp
        progress = self.update / self.num_updates
        if hp.anneal_lr:
            self.lr = hp.learning_rate * (1.0 - progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        torch.set_num_threads(1)
        rollout = self.collector.collect(hp.rollout_steps)
        if not self.overlap:
            # An overlapped update shares the cores with collection, which goes on
            # meanwhile; one thread each keeps them from preempting each other.
            torch.set_num_threads(self.update_threads)
        self.global_step += self.batch_steps
        adv, ret = compute_gae(
            rollout.rewards.astype(np.float64),
            rollout.values.numpy().astype(np.float64),
            rollout.valid.numpy(),
            rollout.terminated,
            rollout.truncated,
            rollout.last_value,
            hp.gamma,
            hp.gae_lambda,
        )
        if self.overlap:
            stats = self._update_while_collecting(rollout, adv, ret)
        else:
            stats = ppo_update(
                self.policy, self.optimizer, rollout, adv, ret, hp, self.tuner.coef, self.generator
            )
        target = self.tuner.target(progress)
        ent_coef_used = self.tuner.coef
        self.tuner.update(stats.entropy, progress)
        self.update += 1

        returns = self.collector.recent_returns(control=1.0)
        lengths = [e.length for e in self.collector.episodes if e.control == 1.0]
        row = {
            "update": self.update,
            "global_step": self.global_step,
            "episodes": self.collector.total_episodes,
            "mean_return": float(np.mean(returns)) if returns else "",
            "mean_length": float(np.mean(lengths)) if lengths else "",
            "policy_loss": stats.policy_loss,
            "value_loss": stats.value_loss,
            "entropy": stats.entropy,
            "approx_kl": stats.approx_kl,
            "clip_fraction": stats.clip_fraction,
            "explained_variance": stats.explained_variance,
            "epochs": stats.epochs,
            "learning_rate": self.lr,
            "ent_coef": ent_coef_used,
            "target_entropy": target,
        }
        elapsed = time.perf_counter() - started
        timing = {
            "update": self.update,
            "global_step": self.global_step,
            "wall_time_s": elapsed,
            "steps_per_sec": (self.global_step - start_step) / max(elapsed, 1e-9),
        }
        if self.asynchronous:
            timing["policy_lag"] = self.collector.policy_lag
            timing["hosts_up"] = sum(1 for host in self.envs.hosts if host.up)
        reporter.log(row, timing)
        return row


class EnvHostsUnavailable(RuntimeError):
    """Every env host stayed down longer than the fleet timeout; raised after the
    checkpoint was saved, so the run can be resumed once hosts are back."""

    def __init__(self, reason: str, run_dir: Path, global_step: int) -> None:
        super().__init__(
            f"{reason}. Training stopped at step {global_step}; the checkpoint is in "
            f"{run_dir} (continue with --resume once the env hosts are back)"
        )
        self.run_dir = run_dir
        self.global_step = global_step


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised after the checkpoint was saved."""

    def __init__(self, run_dir: Path, global_step: int) -> None:
        super().__init__(f"interrupted at step {global_step}; checkpoint saved in {run_dir}")
        self.run_dir = run_dir
        self.global_step = global_step


def saved_total_steps(runs_dir: str | Path, run_name: str) -> int | None:
    """The step budget a saved run was started with, or None when there is no such run.

    Resuming without naming a budget keeps this one, rather than the 100k default.
    """
    saved = Path(runs_dir) / run_name / "hyperparameters.yaml"
    return Hyperparameters.from_yaml(saved).total_steps if saved.exists() else None


def claim_run(hparams: Hyperparameters) -> Hyperparameters:
    """``hparams`` with its run name fixed: a fresh timestamped directory is created when
    it has none. Faces call it before opening env hosts, whose logs go in the run dir."""
    if hparams.run_name is not None:
        return hparams
    name = _claim_new_name(Path(hparams.runs_dir), default_run_name(hparams))
    return hparams.replace(run_name=name)


def run_dir_of(hparams: Hyperparameters) -> Path:
    """Where the run named by ``hparams`` lives (its name must be fixed)."""
    if hparams.run_name is None:
        raise ValueError("the run has no name yet; call claim_run first")
    return Path(hparams.runs_dir) / hparams.run_name


def train(
    hparams: Hyperparameters,
    *,
    resume: bool = False,
    envs: Any = None,
    show_progress: bool | None = None,
) -> RunResult:
    """Train a GPT policy with PPO and return where the run was saved.

    ``hparams.run_name`` picks ``<runs_dir>/<run_name>`` (a timestamped name when None).
    With ``resume`` the run continues from that directory's checkpoint using its saved
    hyperparameters (``total_steps`` from ``hparams`` may extend it). ``envs`` may be
    any NEXT_STEP-autoreset ``gymnasium.vector.VectorEnv``, or an asynchronous vector env
    (:class:`~agentgpt.core.async_env.AsyncVectorEnv`, such as a
    :class:`~agentgpt.remote.fleet.Fleet` of env servers); the caller keeps ownership of
    envs it passes. By default local envs are made from ``hparams.env_id``. Where env
    servers run is not the trainer's business: ``AgentGPT.train`` and ``agentgpt train``
    open them (:mod:`agentgpt.hosts`) and pass the fleet in. ``show_progress`` defaults
    to showing the live view when stdout is a terminal. Ctrl-C saves a checkpoint and
    raises :class:`TrainingInterrupted`; envs that stay unavailable save one and raise
    :class:`EnvHostsUnavailable`.
    """
    hparams = claim_run(hparams)
    run_dir = run_dir_of(hparams)
    state = None
    if resume:
        state = load_checkpoint(run_dir)
        saved = Hyperparameters.from_dict(state["hyperparameters"])
        hparams = saved.replace(total_steps=hparams.total_steps, run_name=hparams.run_name)
        state["hyperparameters"] = hparams.to_dict()
    elif (run_dir / CHECKPOINT_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True or another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(hparams, run_dir, envs=envs, resume_state=state)
    if state is None:
        trainer.save()
    return trainer.run(show_progress=show_progress)
