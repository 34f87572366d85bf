"""One trial: train with the trial's hyperparameters, report evaluations, get pruned.

A trial is an ordinary run of :func:`agentgpt.train.run.train` (its own run directory
with checkpoints, ``metrics.csv`` and TensorBoard logs) under the study's folder,
``<runs_dir>/<study>/trial-0007``. :class:`TrialReporter`, a training callback, hands
the trainer's periodic deterministic evaluations to Optuna at fixed fractions of the
step budget (the same steps for every trial, whatever its rollout size, so that the
pruner compares like with like) and stops the run when the pruner says so.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgpt.train.callbacks import Callback, EvaluationEvent, UpdateEvent
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.tune.space import PrunerSettings, SearchSpace
from agentgpt.tune.storage import DEFAULT_HEARTBEAT, study_dir

__all__ = [
    "OBJECTIVES",
    "Objective",
    "TrialFailed",
    "TuneAborted",
    "TuneSettings",
    "TrialReporter",
    "report_schedule",
]

#: What a trial is scored by: ``eval`` is the mean return of deterministic episodes on
#: fresh local envs (the default); ``train`` is the mean return of the training
#: episodes, for envs that exist only on env servers.
OBJECTIVES = ("eval", "train")

_PRUNED = "pruned by the tuner"
_TAKEN = "marked failed elsewhere"


class TrialFailed(Exception):
    """A trial that could not train (its error is kept with the trial); the search goes
    on with the next one."""


class TuneAborted(RuntimeError):
    """An error that every further trial would hit too (env servers unreachable): the
    worker stops."""


@dataclass
class TuneSettings:
    """Everything a tuning worker needs, picklable so worker processes get a copy."""

    env_id: str
    study: str
    trials: int
    base: dict[str, Any]
    storage: str
    budget_steps: int
    space: SearchSpace = field(default_factory=SearchSpace)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    jobs: int = 1
    reports: int = 5
    eval_episodes: int = 10
    objective: str = "eval"
    sampler_seed: int | None = None
    heartbeat: int = DEFAULT_HEARTBEAT
    #: ``agentgpt.hosts.fleet.FleetOptions`` when trials train on env servers.
    fleet: Any = None

    @property
    def base_hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_dict(self.base)

    @property
    def folder(self) -> Path:
        return study_dir(self.base_hyperparameters.runs_dir, self.study)

    @property
    def milestone(self) -> int:
        """Env steps between two reports."""
        return max(1, self.budget_steps // self.reports)


def report_schedule(num_updates: int, reports: int) -> int:
    """Updates between two evaluations of a trial, so that it reports about ``reports``
    times, the last one at or near its end."""
    return max(1, num_updates // max(1, reports))


class TrialReporter(Callback):
    """Reports a trial's evaluation returns to Optuna and stops it once pruned.

    A report's step is a fraction of the budget in env steps, ``k * budget / reports``
    with ``k`` the nearest report number, identical for every trial.
    """

    def __init__(self, trial: Any, settings: TuneSettings, every: int) -> None:
        self.trial = trial
        self.settings = settings
        self.every = every
        self.last_k = 0
        self.last_value: float | None = None
        self.last_update = 0
        self.pruned_at: int | None = None

    def on_evaluation(self, event: EvaluationEvent) -> None:
        if self.settings.objective == "eval" and event.result is not None:
            self._report(event, event.result.mean)

    def on_update(self, event: UpdateEvent) -> None:
        if self.settings.objective != "train":
            return
        if event.update % self.every and event.update != event.num_updates:
            return
        value = event.row.get("mean_return", "")
        if value != "":
            self._report(event, float(value))

    def _report(self, event: UpdateEvent | EvaluationEvent, value: float) -> None:
        self.last_value, self.last_update = value, event.update
        reports = self.settings.reports
        k = min(reports, round(event.update * reports / max(event.num_updates, 1)))
        if k < 1 or k <= self.last_k or not math.isfinite(value):
            return
        self.last_k = k
        step = k * self.settings.milestone
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.trial.report(value, step)
        except UpdateFinishedTrialError:
            # Another worker found this trial's heartbeat late and failed it (it is
            # retried there): stop training it.
            event.request_stop(_TAKEN)
            return
        if self.trial.should_prune():
            self.pruned_at = step
            event.request_stop(_PRUNED)


class Objective:
    """The function Optuna calls for each trial: returns the trial's final score."""

    def __init__(self, settings: TuneSettings) -> None:
        self.settings = settings
        self.base = settings.base_hyperparameters
        threads = self.base.torch_threads
        if not threads and settings.jobs > 1:
            # Workers on one machine share its cores.
            threads = max(1, (os.cpu_count() or 1) // settings.jobs)
        self.base = self.base.replace(torch_threads=threads)

    def __call__(self, trial: Any) -> float:
        import optuna

        settings = self.settings
        try:
            hp = settings.space.suggest(trial, self.base)
        except ValueError as exc:
            raise self._failed(trial, f"invalid hyperparameters: {exc}") from None
        num_updates = max(1, settings.budget_steps // hp.batch_steps)
        every = report_schedule(num_updates, settings.reports)
        folder = settings.folder
        hp = hp.replace(
            env_id=settings.env_id,
            total_steps=settings.budget_steps,
            runs_dir=str(folder),
            run_name=_claim_trial_dir(folder, trial.number),
            eval_every=every if settings.objective == "eval" else 0,
            eval_episodes=settings.eval_episodes,
            wandb=False,
        )
        run_dir = folder / hp.run_name
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", f"{socket.gethostname()}:{os.getpid()}")
        best = hp.replace(
            runs_dir=self.base.runs_dir,
            run_name=None,
            eval_every=self.base.eval_every,
            eval_episodes=self.base.eval_episodes,
            torch_threads=settings.base_hyperparameters.torch_threads,
        )
        trial.set_user_attr("hyperparameters", best.to_dict())

        reporter = TrialReporter(trial, settings, every)
        result = self._train(trial, hp, reporter)
        if result.stopped_early and result.stop_reason == _TAKEN:
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"trial {trial.number} was marked failed while it ran (its heartbeat was late)"
            )
        trial.set_user_attr("global_step", result.global_step)
        if result.stopped_early and result.stop_reason == _PRUNED:
            raise optuna.TrialPruned(f"at step {reporter.pruned_at}: {reporter.last_value:.1f}")
        value = reporter.last_value
        if settings.objective == "eval" and (
            value is None or reporter.last_update < result.updates
        ):
            try:
                value = self._final_evaluation(result.run_dir, hp)
            except Exception as exc:  # e.g. an env that exists only on env servers
                raise self._failed(
                    trial,
                    f"evaluation failed ({type(exc).__name__}: {_one_line(exc)});"
                    " --objective train scores trials without local envs",
                ) from exc
        if value is None:
            raise self._failed(trial, "no episode finished within the budget to score it")
        if reporter.last_k < settings.reports:
            trial.report(value, settings.reports * settings.milestone)
        return float(value)

    def _train(self, trial: Any, hp: Hyperparameters, reporter: TrialReporter) -> Any:
        import contextlib

        from agentgpt.core.errors import EnvsUnavailable
        from agentgpt.envs import PETTINGZOO_ENVS
        from agentgpt.remote import RemoteEnvError
        from agentgpt.train.run import EnvHostsUnavailable, train

        try:
            with contextlib.ExitStack() as stack:
                envs = None
                if self.settings.fleet is not None:
                    envs = stack.enter_context(self._open_fleet(hp))
                return train(
                    hp,
                    envs=envs,
                    show_progress=False,
                    callbacks=[reporter],
                    team_envs=PETTINGZOO_ENVS,
                )
        except (EnvHostsUnavailable, RemoteEnvError, EnvsUnavailable) as exc:
            trial.set_user_attr("error", _one_line(exc))
            raise TuneAborted(
                f"trial {trial.number} cannot reach its envs: {_one_line(exc)}"
            ) from None
        except (KeyboardInterrupt, TuneAborted):
            raise
        except Exception as exc:
            raise self._failed(trial, f"{type(exc).__name__}: {_one_line(exc)}") from exc

    def _open_fleet(self, hp: Hyperparameters) -> Any:
        from agentgpt.envs import PETTINGZOO_ENVS
        from agentgpt.hosts.fleet import open_fleet

        return open_fleet(
            hp.env_id,
            self.settings.fleet,
            num_envs=hp.num_envs,
            seed=hp.seed,
            env_kwargs=hp.env_kwargs,
            register=PETTINGZOO_ENVS,
            log_dir=Path(hp.runs_dir) / str(hp.run_name) / "env-hosts",
        )

    def _final_evaluation(self, run_dir: Path, hp: Hyperparameters) -> float:
        from agentgpt.agent.checkpoint import load_agent
        from agentgpt.envs import PETTINGZOO_ENVS
        from agentgpt.train.run import local_evaluator

        agent = load_agent(run_dir)
        return local_evaluator(hp, PETTINGZOO_ENVS)(agent, hp.eval_episodes, hp.seed).mean

    @staticmethod
    def _failed(trial: Any, message: str) -> TrialFailed:
        trial.set_user_attr("error", message)
        return TrialFailed(message)


def _claim_trial_dir(folder: Path, number: int) -> str:
    """A fresh run directory name for trial ``number`` (``trial-0007``, or
    ``trial-0007-2`` when an older study of the same name left one)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"trial-{number:04d}"
    for attempt in range(1, 1000):
        name = base if attempt == 1 else f"{base}-{attempt}"
        try:
            (folder / name).mkdir()
        except FileExistsError:
            continue
        return name
    raise RuntimeError(f"could not find a free run name for trial {number} in {folder}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
