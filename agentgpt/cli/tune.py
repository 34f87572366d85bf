"""``agentgpt tune``: hyperparameter search with Optuna, on one machine or many.

Each trial is an ordinary training run; a study lives in an SQLite file in the runs dir
by default, or in a shared database (``--storage postgresql://...``) that workers on any
number of machines join. Optuna, torch and the rest are imported inside the command, so
``agentgpt --help`` stays instant; a missing ``tune`` extra ends the command with the
install line (``agentgpt.cli.extras``). Every input is checked before the first trial
trains: a bad tune file or an unreachable storage costs one line, not a traceback.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentgpt.cli.extras import require
from agentgpt.cli.fleet_flags import (
    ApiKeyFlag,
    EnvHostsFlag,
    EnvsPerHostFlag,
    EnvUrlFlag,
    FleetTimeoutFlag,
    StepTimeoutFlag,
)

_STUDY_PANEL = "Study"

#: Exit status of input errors (a bad tune file, flags that do not fit together).
EXIT_BAD_INPUT = 2


def _fail(message: str, status: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(status)


def default_study_name(env_id: str) -> str:
    return "tune-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", env_id).strip("-")


def tune_command(
    env_id: Annotated[
        Optional[str],  # noqa: UP045 (typer reads annotations at runtime)
        typer.Argument(help="Gymnasium id, e.g. CartPole-v1 (or env_id in the tune file)."),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            min=1,
            help="Finished trials the study should have; every worker stops once it has.",
        ),
    ] = 20,
    jobs: Annotated[
        int, typer.Option(min=1, help="Workers on this machine (processes sharing its cores).")
    ] = 1,
    budget_steps: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1, metavar="STEPS", help="Env steps per trial (default: total_steps, 100k)."
        ),
    ] = None,
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            help="Tune file (YAML): base hyperparameters, search space, pruner; see docs/tuning.md.",
        ),
    ] = None,
    storage: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="URL",
            help="Study storage shared by workers, e.g. postgresql://user:pw@host/db "
            "(default: an SQLite file in the study's folder).",
            envvar="AGENTGPT_TUNE_STORAGE",
            show_envvar=False,
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    study: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="NAME",
            help="Study name (default: tune-<env>); workers with the same name share it.",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Print the study's trials and best result, and exit.",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = False,
    best: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            metavar="PATH",
            help="Also write the best hyperparameters here (default: <study folder>/best.yaml).",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    runs_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="Parent of the study's folder (default: runs_dir of the tune file, runs).",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    pruner: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="KIND",
            help="median (default), halving (successive halving) or none.",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    reports: Annotated[
        int,
        typer.Option(
            min=1,
            help="Evaluations per trial (the points where a trial can be pruned).",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = 5,
    eval_episodes: Annotated[
        int,
        typer.Option(
            min=1, help="Deterministic episodes per evaluation.", rich_help_panel=_STUDY_PANEL
        ),
    ] = 10,
    objective: Annotated[
        str,
        typer.Option(
            metavar="eval|train",
            help="Score trials by deterministic evaluation on local envs (eval) or by the"
            " return of training episodes (train: for envs that exist only on env servers).",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = "eval",
    sampler_seed: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            metavar="SEED",
            help="Seed of the TPE sampler (worker i uses SEED + i).",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = None,
    heartbeat: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="Seconds between a running trial's heartbeats; a trial silent for twice"
            " as long (its worker died) is marked failed and retried.",
            rich_help_panel=_STUDY_PANEL,
        ),
    ] = 30,
    live: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--live/--no-live", help="Live table of trials (default: in a terminal)."),
    ] = None,
    env_url: EnvUrlFlag = None,
    env_hosts: EnvHostsFlag = 0,
    envs_per_host: EnvsPerHostFlag = None,
    api_key: ApiKeyFlag = None,
    fleet_timeout: FleetTimeoutFlag = 60.0,
    step_timeout: StepTimeoutFlag = 30.0,
) -> None:
    """Search hyperparameters with Optuna, e.g. agentgpt tune CartPole-v1 --trials 20.

    Each trial trains a normal run (runs/<study>/trial-NNNN) and is evaluated at
    intervals; losing trials are pruned. Run the same command on other machines with
    --storage postgresql://... to search together. --show prints a study from anywhere.
    """
    if show:
        require("tune", "optuna")
    else:
        require("tune", "torch", "tensorboard", "optuna")
    from rich.console import Console

    from agentgpt.tune.objective import OBJECTIVES, TuneAborted, TuneSettings
    from agentgpt.tune.space import PrunerSettings, TuneConfigError, load_tune_file
    from agentgpt.tune.storage import StorageError, default_storage_url

    try:
        tune_file = load_tune_file(config)
        base = dict(tune_file.base)
        if env_id is None:
            env_id = base.get("env_id")
        if env_id is None:
            raise TuneConfigError(
                "name the env (agentgpt tune CartPole-v1) or set env_id in --config"
            )
        base["env_id"] = env_id
        if runs_dir is not None:
            base["runs_dir"] = str(runs_dir)
        if objective not in OBJECTIVES:
            raise TuneConfigError(f"--objective must be eval or train, not {objective!r}")
        pruner_settings = tune_file.pruner
        if pruner is not None:
            pruner_settings = PrunerSettings(
                pruner, pruner_settings.startup_trials, pruner_settings.warmup_reports
            )
        from agentgpt.train.hyperparameters import Hyperparameters

        base_hp = Hyperparameters.from_dict(base)
        budget = budget_steps if budget_steps is not None else base_hp.total_steps
        if not show:
            tune_file.space.check(base_hp.replace(total_steps=budget))
    except (TuneConfigError, ValueError, TypeError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None

    name = study or default_study_name(env_id)
    url = storage or default_storage_url(base_hp.runs_dir, name)
    console = Console()
    if show:
        _show(url, name, best, console)
        return

    from agentgpt.cli.train import _fleet_options

    fleet = _fleet_options(env_url, env_hosts, envs_per_host, api_key, fleet_timeout, step_timeout)
    settings = TuneSettings(
        env_id=env_id,
        study=name,
        trials=trials,
        base=base_hp.to_dict(),
        storage=url,
        budget_steps=budget,
        space=tune_file.space,
        pruner=pruner_settings,
        jobs=jobs,
        reports=reports,
        eval_episodes=eval_episodes,
        objective=objective,
        sampler_seed=sampler_seed,
        heartbeat=heartbeat,
        fleet=fleet,
    )
    from agentgpt.tune.report import print_summary
    from agentgpt.tune.study import BEST_FILE, load_existing_study, tune, write_best

    show_live = sys.stdout.isatty() if live is None else live
    try:
        summary = tune(settings, live=show_live, console=console)
    except KeyboardInterrupt:
        typer.echo(
            f"Interrupted; the study is saved ({name}). Run the same command to go on.",
            err=True,
        )
        raise typer.Exit(130) from None
    except (StorageError, TuneAborted) as exc:
        raise _fail(str(exc)) from None
    except TuneConfigError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    best_file = settings.folder / BEST_FILE
    if best is not None:
        write_best(load_existing_study(url, name), best)
        best_file = best
    print_summary(summary, console, best_file if summary.best_number is not None else None)


def _show(url: str, name: str, best: Path | None, console: Any) -> None:
    from agentgpt.tune.report import show
    from agentgpt.tune.storage import StorageError
    from agentgpt.tune.study import load_existing_study, write_best

    try:
        study = load_existing_study(url, name)
    except StorageError as exc:
        raise _fail(str(exc)) from None
    summary = show(study, console)
    if best is not None and summary.best_number is not None:
        write_best(study, best)
        console.print(f"Best hyperparameters written to {best}")


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command to ``app``."""
    app.command("tune", no_args_is_help=True)(tune_command)
