"""A study: opening it, running workers on it, and what it found.

:func:`open_study` creates or joins the study (TPE sampler, the chosen pruner) after
checking that it tunes the same env with the same budget. :func:`run_worker` takes
trials until the study has ``trials`` finished ones; any number of workers, in this
process, in child processes (``--jobs``) or on other machines (a shared database), run
it side by side. :func:`tune` is what ``agentgpt tune`` does on one machine: open,
start the workers, show the trials, and write ``best.yaml``.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.tune.objective import Objective, TrialFailed, TuneAborted, TuneSettings
from agentgpt.tune.space import TuneConfigError
from agentgpt.tune.storage import StorageError, open_storage, redact

__all__ = [
    "BEST_FILE",
    "StudySummary",
    "best_hyperparameters",
    "load_existing_study",
    "open_study",
    "run_worker",
    "summarize",
    "tune",
    "write_best",
]

#: Written into the study's folder at the end of ``agentgpt tune``.
BEST_FILE = "best.yaml"


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def make_pruner(settings: TuneSettings) -> Any:
    import optuna

    pruner = settings.pruner
    milestone = settings.milestone
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.startup_trials,
            # Reports are at multiples of the milestone; the first warmup_reports are
            # never pruned on.
            n_warmup_steps=pruner.warmup_reports * milestone + (1 if pruner.warmup_reports else 0),
        )
    if pruner.kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            # The first rung is the first report after the warmup.
            min_resource=(pruner.warmup_reports + 1) * milestone,
            reduction_factor=3,
        )
    return optuna.pruners.NopPruner()


def open_study(settings: TuneSettings, *, worker: int = 0) -> Any:
    """Create the study, or join it when it exists (the same env and budget).

    ``worker`` numbers the workers of one machine: each seeds its sampler with
    ``sampler_seed + worker``, so seeded workers do not draw the same trials.
    """
    import optuna

    _quiet_optuna()
    storage = open_storage(settings.storage, heartbeat_interval=settings.heartbeat)
    seed = None if settings.sampler_seed is None else settings.sampler_seed + worker
    # constant_liar: trials running elsewhere count as bad guesses, so concurrent
    # workers spread out instead of all sampling the same promising point.
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study,
        direction="maximize",
        sampler=sampler,
        pruner=make_pruner(settings),
        load_if_exists=True,
    )
    attrs = study.user_attrs
    mine = {"env_id": settings.env_id, "budget_steps": settings.budget_steps}
    for key, value in mine.items():
        if key in attrs and attrs[key] != value:
            raise TuneConfigError(
                f"study {settings.study} was started with {key} {attrs[key]}, not {value}; "
                "pick another --study name"
            )
        if key not in attrs:
            study.set_user_attr(key, value)
    if "objective" not in attrs:
        study.set_user_attr("objective", settings.objective)
    return study


def load_existing_study(storage_url: str, study: str) -> Any:
    """An existing study, for reading (``--show``); :class:`StorageError` when there is
    none of that name."""
    import optuna

    _quiet_optuna()
    storage = open_storage(storage_url, create=False)
    try:
        return optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = f" (studies there: {', '.join(names)})" if names else ""
        raise StorageError(f"no study named {study} in {redact(storage_url)}{known}") from None


def _counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {state.name: 0 for state in TrialState}
    errored = 0
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
        if trial.state == TrialState.FAIL and "error" in trial.user_attrs:
            errored += 1
    counts["ERRORED"] = errored
    return counts


def next_step(study: Any, trials: int) -> str:
    """What a worker does next: ``"run"`` a trial (retries are waiting, or fewer than
    ``trials`` are finished or running), ``"wait"`` for trials running elsewhere (so
    that one whose worker dies is still retried), or ``"done"``.

    A trial that failed with an error counts as finished (it is not retried); one whose
    worker died is failed here once its heartbeat is stale, queued again, and counts
    through its retry.
    """
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    counts = _counts(study)
    if counts["WAITING"]:
        return "run"
    finished = counts["COMPLETE"] + counts["PRUNED"] + counts["ERRORED"]
    if finished + counts["RUNNING"] < trials:
        return "run"
    return "wait" if counts["RUNNING"] else "done"


def run_worker(
    settings: TuneSettings,
    *,
    worker: int = 0,
    on_trial: Callable[[Any, Any], None] | None = None,
) -> int:
    """Run trials of the study until it has enough; returns how many this worker ran.

    Once no trial is left to start, the worker waits for the trials still running (on
    any machine) to end, so that it can retry any whose worker dies. Raises
    :class:`TuneAborted` when trials cannot reach their envs, and lets Ctrl-C through
    (the running trial is marked failed).
    """
    import optuna

    study = open_study(settings, worker=worker)
    objective = Objective(settings)
    callbacks = [on_trial] if on_trial is not None else []
    ran = 0
    while True:
        step = next_step(study, settings.trials)
        if step == "done":
            return ran
        if step == "wait":
            time.sleep(min(settings.heartbeat, 2))
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
            # Only a trial that another worker failed while it ran (a heartbeat that came
            # too late) is let through: it is retried like any stale trial.
            if not _taken_away(exc):
                raise
            print(
                "A trial of this worker was failed by another worker (its heartbeat came"
                " late); it is retried.",
                file=sys.stderr,
                flush=True,
            )
        ran += 1


def _taken_away(exc: Exception) -> bool:
    import optuna

    if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
        return True
    return str(exc).startswith("Cannot tell a")


# ------------------------------------------------------------------------- results
@dataclass
class StudySummary:
    """What a study found so far."""

    name: str
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    #: Parameter -> share of the variance of the score it explains (fANOVA), or None
    #: when too few trials finished to say.
    importances: dict[str, float] | None


def summarize(study: Any) -> StudySummary:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max(complete, key=lambda t: t.value) if complete else None
    importances = None
    if len(complete) >= 2:
        import optuna

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            importances = None
    return StudySummary(
        name=study.study_name,
        counts=_counts(study),
        best_number=None if best is None else best.number,
        best_value=None if best is None else float(best.value),
        best_params={} if best is None else dict(best.params),
        importances=importances,
    )


def best_hyperparameters(study: Any) -> Hyperparameters | None:
    """The full hyperparameters of the best finished trial (as ``agentgpt train`` takes
    them), or None when no trial finished."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    return Hyperparameters.from_dict(best.user_attrs["hyperparameters"])


def write_best(study: Any, path: str | Path) -> Path | None:
    """Write the best trial's hyperparameters to ``path``, ready for ``agentgpt train
    --config``; None when no trial finished yet."""
    import yaml

    hp = best_hyperparameters(study)
    if hp is None:
        return None
    summary = summarize(study)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Best trial ({summary.best_number}) of study {summary.name}: "
        f"evaluation return {summary.best_value:.2f}.\n"
        f"# Train with it: agentgpt train --config {path.name}\n"
    )
    path.write_text(header + yaml.safe_dump(hp.to_dict(), sort_keys=False))
    return path


# --------------------------------------------------------------------- one machine
def _worker_process(settings: TuneSettings, worker: int, print_trials: bool) -> None:
    """A ``--jobs`` worker in a child process; exits 1 with one line on an error."""
    from agentgpt.tune.report import trial_line

    on_trial = (lambda study, trial: print(trial_line(trial), flush=True)) if print_trials else None
    try:
        run_worker(settings, worker=worker, on_trial=on_trial)
    except KeyboardInterrupt:
        sys.exit(130)
    except (TuneAborted, StorageError, TuneConfigError) as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def tune(
    settings: TuneSettings,
    *,
    live: bool = False,
    console: Any = None,
) -> StudySummary:
    """Run ``settings.jobs`` workers on this machine until the study has
    ``settings.trials`` finished trials; write ``best.yaml`` into the study's folder.

    With ``live`` a table of the trials is redrawn while they run; otherwise one line
    is printed as each trial ends. Errors that stop the search raise
    :class:`TuneAborted`, :class:`StorageError` or :class:`TuneConfigError`.
    """
    from agentgpt.tune.report import live_table, trial_line

    study = open_study(settings)  # creates it once, before the workers race to
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_worker_process,
            args=(settings, i, not live),
            name=f"agentgpt-tune-{i}",
            daemon=False,
        )
        for i in range(1, settings.jobs)
    ]
    on_trial = None if live else (lambda study, trial: print(trial_line(trial), flush=True))
    for child in children:
        child.start()
    try:
        if live:
            with live_table(settings, console=console):
                run_worker(settings, on_trial=on_trial)
                _join(children)
        else:
            run_worker(settings, on_trial=on_trial)
            _join(children)
    except BaseException:
        _stop(children)
        raise
    failed = [c for c in children if c.exitcode not in (0, None)]
    if failed and not _counts(study)["COMPLETE"]:
        raise TuneAborted(f"{len(failed)} worker process(es) failed; see the lines above")
    write_best(study, settings.folder / BEST_FILE)
    return summarize(study)


def _join(children: list[Any]) -> None:
    for child in children:
        child.join()


def _stop(children: list[Any]) -> None:
    """Ctrl-C or an error in the main worker: give the children a moment to mark their
    trials failed (they got the same Ctrl-C from the terminal), then end them."""
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
            child.join(timeout=5)
