"""The training loop: collect, compute GAE, update, tune, report, checkpoint.

:func:`train` is the one entry point; the CLI (``agentgpt train``) and
``AgentGPT.train`` both call it. Every env source is an asynchronous vector env
(:mod:`agentgpt.core.async_env`): a Gymnasium vector env goes through
:class:`~agentgpt.core.local.LocalVectorEnv`, a fleet of env servers speaks the protocol
itself, and one :class:`~agentgpt.train.collector.Collector` drives either.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agentgpt.agent.agent import Agent
from agentgpt.agent.checkpoint import (
    CHECKPOINT_FILE,
    FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)
from agentgpt.agent.evaluate import EvalResult, evaluate
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.async_env import is_async_vector_env
from agentgpt.core.errors import EnvsUnavailable
from agentgpt.core.factories import load_factory
from agentgpt.core.local import LocalVectorEnv
from agentgpt.core.registration import register_namespace
from agentgpt.policy.model import GPTPolicy
from agentgpt.train.callbacks import (
    Callback,
    CallbackList,
    EvaluationEvent,
    StopRequest,
    UpdateEvent,
)
from agentgpt.train.collector import Collector
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.ppo import EntropyTuner, UpdateStats, compute_gae, ppo_update
from agentgpt.train.replicas import ReplicaLost, Replicas, replica_seed
from agentgpt.train.reporting import Reporter
from agentgpt.train.reward_scaling import RewardScaler
from agentgpt.train.threads import free_cores

log = logging.getLogger("agentgpt.train")

#: Plays a policy's evaluation episodes: ``(agent, episodes, seed) -> EvalResult``.
Evaluator = Callable[[Agent, int, int], EvalResult]


@dataclass
class RunResult:
    """What a finished run leaves behind (an interrupted one raises
    :class:`TrainingInterrupted` instead)."""

    run_dir: Path
    global_step: int
    updates: int
    #: The last row written to ``metrics.csv``.
    metrics: dict[str, Any] = field(default_factory=dict)
    #: A callback asked the run to stop before its step budget was spent.
    stopped_early: bool = False
    #: The reason the callback gave (None when the run finished).
    stop_reason: str | None = None


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


def make_envs(hp: Hyperparameters) -> LocalVectorEnv:
    """Local envs for ``hp.env_id``, behind the asynchronous protocol.

    Sync envs run with DISABLED autoreset and the adapter performs the reset step itself,
    so the sub-envs plus the adapter's state are everything a checkpoint needs. Async
    envs (subprocesses, never saved) keep Gymnasium's NEXT_STEP autoreset, which spares
    them the separate round trip of each reset.
    """
    register_namespace(hp.env_id)
    mode = AutoresetMode.DISABLED if hp.vectorization_mode == "sync" else AutoresetMode.NEXT_STEP
    envs = gymnasium.make_vec(
        hp.env_id,
        num_envs=hp.num_envs,
        vectorization_mode=hp.vectorization_mode,
        vector_kwargs={"autoreset_mode": mode},
        **hp.env_kwargs,
    )
    return LocalVectorEnv(envs)


def as_async_envs(envs: Any) -> Any:
    """``envs`` speaking the asynchronous protocol: as given when it does (a fleet, a
    :class:`LocalVectorEnv`), wrapped when it is a Gymnasium vector env."""
    if is_async_vector_env(envs):
        return envs
    if isinstance(envs, gymnasium.vector.VectorEnv):
        return LocalVectorEnv(envs)
    raise TypeError(
        "envs must be a gymnasium VectorEnv or an asynchronous vector env "
        f"(async_reset/recv/send), got {type(envs).__name__}"
    )


def local_evaluator(hp: Hyperparameters, team_envs: Mapping[str, str] | None = None) -> Evaluator:
    """Evaluation on fresh local envs of the run's id: :func:`evaluate` for a Gymnasium
    id, the team return (:func:`evaluate_team`) for a PettingZoo id in ``team_envs``
    (names mapped to ``"module:factory"``)."""
    factory = (team_envs or {}).get(hp.env_id)
    if factory is None:
        return lambda agent, episodes, seed: evaluate(agent, episodes=episodes, seed=seed)

    from agentgpt.agent.team_eval import evaluate_team

    def play_team(agent: Agent, episodes: int, seed: int) -> EvalResult:
        env = load_factory(factory)(**hp.env_kwargs)
        try:
            return evaluate_team(agent, env, episodes, seed=seed)
        finally:
            env.close()

    return play_team


def _seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Owns every object of a run; :meth:`run` trains until ``total_steps`` (or until a
    callback asks it to stop)."""

    def __init__(
        self,
        hp: Hyperparameters,
        run_dir: Path,
        envs: Any = None,
        resume_state: dict[str, Any] | None = None,
        evaluator: Evaluator | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        self.hp = hp
        self.run_dir = run_dir
        #: The processes training this policy together (just this one by default).
        self.replicas = replicas or Replicas()
        #: This replica's env seed (the run's seed on the leader).
        self.env_seed = replica_seed(hp.seed, self.replicas.rank)
        self.model, self.ppo, self.run_config = hp.model, hp.ppo, hp.run
        # Collection runs many tiny forward passes, which extra threads only slow down;
        # the update's larger batches use every core no other program keeps busy.
        self.update_threads = hp.torch_threads or free_cores(os.cpu_count() or 1)
        if not hp.torch_threads and self.update_threads < (os.cpu_count() or 1):
            log.info(
                "other programs keep the cores busy: the update uses %d thread(s) "
                "(--torch-threads sets the count)",
                self.update_threads,
            )
        self.evaluator = evaluator or local_evaluator(hp)
        _seed_everything(hp.seed)

        self.owns_envs = envs is None
        self.envs = make_envs(hp) if envs is None else as_async_envs(envs)
        #: Whether checkpoints can hold the envs (own local sync envs that pickle).
        self._envs_saveable = (
            self.owns_envs and isinstance(self.envs, LocalVectorEnv) and self.envs.saveable
        )
        restored = False
        if (
            resume_state is not None
            and self._envs_saveable
            and resume_state.get("format") == FORMAT_VERSION
            and resume_state.get("envs") is not None
        ):
            self.envs.load_state_dict(pickle.loads(resume_state["envs"]))
            restored = True
        self.policy = GPTPolicy(
            self.envs.single_observation_space,
            self.envs.single_action_space,
            **self.model.policy_kwargs(),
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
        #: The network collection acts with. With ``overlap_updates`` it is a copy of
        #: ``policy``, refreshed after each update, so envs keep stepping while the
        #: update runs.
        self.overlap = hp.overlap_updates
        self.actor = copy.deepcopy(self.policy).eval() if self.overlap else self.policy
        self.collector = Collector(
            self.envs,
            self.actor,
            self.normalizer,
            self.reward_scaler,
            rollout_steps=hp.rollout_steps,
            window=hp.window,
            stride=hp.stride,
            control_random_prob=hp.control_random_prob,
            seed=self.env_seed,
        )
        self.tuner = EntropyTuner(self.policy, self.ppo)
        self.generator = torch.Generator().manual_seed(hp.seed + 1)
        #: Steps one update trains on, over all replicas.
        self.batch_steps = self._agree_on_batch(self.envs.num_envs * hp.rollout_steps)
        self.num_updates = max(1, hp.total_steps // self.batch_steps)
        self.update = 0
        self.global_step = 0
        self.lr = hp.learning_rate

        if resume_state is None:
            self.collector.reset(seed=self.env_seed)
        else:
            self._load(resume_state, restored)
        self._join_replicas()
        self._boundary = self._snapshot()

    def _agree_on_batch(self, steps: int) -> int:
        """The steps of one update over all replicas, each of which must collect as
        many (their minibatches, and so their gradient exchanges, must pair up)."""
        low, high = self.replicas.bounds(steps)
        if low != high:
            raise ValueError(
                f"training replicas collect {low} to {high} steps per update; each must "
                "collect the same (num_envs x rollout_steps)"
            )
        return steps * self.replicas.world_size

    def _join_replicas(self) -> None:
        """Start every replica from the leader's weights and statistics, at the same
        update (a resumed replica must have found the same checkpoint)."""
        replicas = self.replicas
        if not replicas.distributed:
            return
        low, high = replicas.bounds(self.update)
        if low != high:
            raise ValueError(
                f"training replicas start at updates {low} to {high}: every instance "
                "must resume from the same checkpoint"
            )
        replicas.broadcast_parameters(self.policy)
        if self.actor is not self.policy:
            self.actor.load_state_dict(self.policy.state_dict())
        replicas.merge_statistics(self._statistics())

    def _statistics(self) -> list[Any]:
        """The running statistics collection updates (observation and reward scale)."""
        return [self.normalizer.rms, self.reward_scaler.rms]

    # ---------------------------------------------------------- state
    def _snapshot(self) -> dict[str, Any]:
        """Everything needed to continue from the current update boundary (in memory;
        written on the checkpoint schedule, on a stop request and on Ctrl-C)."""
        envs_blob = None
        if self._envs_saveable:
            try:
                envs_blob = pickle.dumps(self.envs.state_dict())
            except Exception:  # native handles (Box2D worlds) do not pickle
                self._envs_saveable = False
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

    def _load(self, state: dict[str, Any], envs_restored: bool) -> None:
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
        if envs_restored and state.get("collector") is not None:
            self.collector.load_state_dict(state["collector"])
        else:
            # Envs could not be saved: continue on freshly reset ones.
            self.collector.reset(seed=self.env_seed + 7919 * self.update)

    def save(self) -> Path | None:
        """Write the checkpoint of the last update boundary (the leader's job when
        several replicas train; the others return None)."""
        if not self.replicas.is_leader:
            return None
        return save_checkpoint(self.run_dir, self._boundary)

    def agent(self) -> Agent:
        """The current policy as an agent (shares the live policy and statistics)."""
        return Agent(self.policy, self.model, self.hp.env, self.normalizer, self.run_dir)

    # ----------------------------------------------------------- loop
    def run(self, callbacks: Iterable[Callback] = ()) -> RunResult:
        """Train until the step budget is spent or a callback asks to stop.

        Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`; envs that stay
        unavailable save one and raise :class:`EnvHostsUnavailable`.
        """
        hooks = CallbackList(callbacks)
        stop = StopRequest()
        last_row: dict[str, Any] = {}
        interrupted = False
        started = time.perf_counter()
        start_step = self.global_step
        try:
            while self.update < self.num_updates and not stop.requested:
                last_row, timing, digest = self._one_update(started, start_step)
                self._boundary = self._snapshot()
                hooks.on_update(
                    self._event(
                        UpdateEvent, stop, row=last_row, timing=timing, weights_digest=digest
                    )
                )
                every = self.run_config.eval_every
                if every and self.update % every == 0 and self.replicas.is_leader:
                    result = self.evaluator(
                        self.agent(), self.run_config.eval_episodes, self.hp.seed
                    )
                    hooks.on_evaluation(self._event(EvaluationEvent, stop, result=result))
                if self.replicas.any(stop.requested) and not stop.requested:
                    stop("another training replica stopped")
                if (
                    stop.requested
                    or self.update % self.run_config.checkpoint_every == 0
                    or self.update == self.num_updates
                ):
                    self.save()
        except KeyboardInterrupt:
            interrupted = True
            self.save()
        except EnvsUnavailable as exc:
            self.save()
            saved_step = int(self._boundary["progress"]["global_step"])
            raise EnvHostsUnavailable(str(exc), self.run_dir, saved_step) from exc
        except ReplicaLost:
            self.save()  # the last boundary every replica agreed on
            raise
        finally:
            try:
                hooks.on_end()
            finally:
                if self.owns_envs:
                    self.envs.close()
        if interrupted:
            saved_step = int(self._boundary["progress"]["global_step"])
            raise TrainingInterrupted(self.run_dir, saved_step)
        return RunResult(
            self.run_dir,
            self.global_step,
            self.update,
            last_row,
            stopped_early=stop.requested,
            stop_reason=stop.reason,
        )

    def _event(self, kind: type, stop: StopRequest, **fields: Any) -> Any:
        return kind(self.update, self.num_updates, self.global_step, stop, **fields)

    def _learn(self, rollout: Any, adv: np.ndarray, ret: np.ndarray) -> UpdateStats:
        """The PPO update of the learner's weights on one rollout."""
        return ppo_update(
            self.policy,
            self.optimizer,
            rollout,
            adv,
            ret,
            self.ppo,
            self.tuner.coef,
            self.generator,
            self.replicas,
        )

    def _update_while_collecting(
        self, rollout: Any, adv: np.ndarray, ret: np.ndarray
    ) -> UpdateStats:
        """Run the PPO update in a thread while the main thread keeps the envs stepping
        with the current actor (rows acted now are one update old when trained; PPO's
        ratio uses the probabilities they were sampled with). The actor takes the new
        weights after the replicas agree on them (:meth:`_one_update`)."""
        outcome: dict[str, Any] = {}

        def learn() -> None:
            try:
                outcome["stats"] = self._learn(rollout, adv, ret)
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
        return outcome["stats"]

    def _one_update(
        self, started: float, start_step: int
    ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """One rollout and update; returns the metrics row, the timing row and the
        weights digest the replicas agreed on (None for a single process)."""
        hp = self.hp
        progress = self.update / self.num_updates
        if hp.anneal_lr:
            self.lr = hp.learning_rate * (1.0 - progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        torch.set_num_threads(1)
        rollout = self.collector.collect(hp.rollout_steps)
        self.replicas.merge_statistics(self._statistics())
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
            stats = self._learn(rollout, adv, ret)
        digest = self.replicas.agree_on_weights(self.policy)
        if self.actor is not self.policy:  # once the weights are final (repaired if need be)
            self.actor.load_state_dict(self.policy.state_dict())
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
            "policy_lag": self.collector.policy_lag,
        }
        hosts = getattr(self.envs, "hosts", None)  # env sources on env servers report them
        if hosts is not None:
            timing["hosts_up"] = sum(1 for host in hosts if host.up)
        return row, timing, digest


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
    callbacks: Iterable[Callback] = (),
    team_envs: Mapping[str, str] | None = None,
    replicas: Replicas | None = None,
) -> RunResult:
    """Train a GPT policy with PPO and return where the run was saved.

    ``hparams.run_name`` picks ``<runs_dir>/<run_name>`` (a timestamped name when None).
    With ``resume`` the run continues from that directory's checkpoint using its saved
    hyperparameters (``total_steps`` from ``hparams`` may extend it). ``envs`` may be
    any ``gymnasium.vector.VectorEnv`` with NEXT_STEP or DISABLED autoreset, or an
    asynchronous vector env (:class:`~agentgpt.core.async_env.AsyncVectorEnv`, such as a
    :class:`~agentgpt.remote.fleet.Fleet` of env servers); the caller keeps ownership of
    envs it passes. By default local envs are made from ``hparams.env_id``. Where env
    servers run is not the trainer's business: ``AgentGPT.train`` and ``agentgpt train``
    open them (:mod:`agentgpt.hosts`) and pass the fleet in.

    ``callbacks`` (:mod:`agentgpt.train.callbacks`) run after every update and every
    periodic evaluation (``eval_every``); one may stop the run early, with a checkpoint.
    The metrics sinks are a callback ``train`` adds itself; ``show_progress`` defaults to
    showing the live view when stdout is a terminal. ``team_envs`` maps PettingZoo names
    to their ``"module:factory"``, so a periodic evaluation of such a run plays the team
    episodes. Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`; envs
    that stay unavailable save one and raise :class:`EnvHostsUnavailable`.

    ``replicas`` (:mod:`agentgpt.train.replicas`) trains one policy in several processes,
    each on its own ``envs``: ``total_steps`` counts the steps of all of them, and only
    the leader writes checkpoints (every replica resumes from the leader's).
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
    trainer = Trainer(
        hparams,
        run_dir,
        envs=envs,
        resume_state=state,
        evaluator=local_evaluator(hparams, team_envs),
        replicas=replicas,
    )
    if state is None:
        trainer.save()
    reporter = Reporter(
        run_dir,
        total_steps=trainer.num_updates * trainer.batch_steps,
        start_step=trainer.global_step,
        resume_update=trainer.update if trainer.update else None,
        config=hparams.to_dict(),
        use_wandb=hparams.wandb,
        wandb_project=hparams.wandb_project,
        show_progress=show_progress,
    )
    return trainer.run([reporter, *callbacks])
