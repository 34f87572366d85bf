"""``agentgpt train``: the one-line trainer on the command line.

Every field of :class:`~agentgpt.train.hyperparameters.Hyperparameters` (the flat view
of a run's env, model, PPO and run configs) is a flag (``--learning-rate 3e-4``,
``--no-normalize-obs``, ``--eval-every 10``), generated from the dataclass so the two
never drift apart. Precedence: defaults < ``--config file.yaml`` < flags. torch is
imported inside the command only, so the CLI loads on machines without it; without the
``train`` extra the command stops with the install line (``agentgpt.cli.extras``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentgpt.cli.extras import require
from agentgpt.cli.fleet_flags import (
    FLEET_PANEL,
    ApiKeyFlag,
    EnvHostsFlag,
    EnvsPerHostFlag,
    EnvUrlFlag,
    FleetTimeoutFlag,
    StepTimeoutFlag,
)
from agentgpt.train.hyperparameters import Hyperparameters

_FIXED_PARAMS = (
    "env_id",
    "config",
    "resume",
    "progress",
    "env_url",
    "env_hosts",
    "env_hosts_dns",
    "listen",
    "envs_per_host",
    "api_key",
    "fleet_timeout",
    "step_timeout",
)


def _field_type(field: dataclasses.Field) -> type:
    hints = typing.get_type_hints(Hyperparameters)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if typing.get_origin(base) is dict or base is dict:
        return str  # JSON text
    return base


def _hyperparameter_params() -> list[inspect.Parameter]:
    params = []
    for field in dataclasses.fields(Hyperparameters):
        if field.name == "env_id":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field)
        if kind is bool:
            option = typer.Option(
                None, f"{flag}/--no-{flag[2:]}", rich_help_panel="Hyperparameters"
            )
        else:
            help_text = "JSON object" if field.name == "env_kwargs" else None
            option = typer.Option(None, flag, help=help_text, rich_help_panel="Hyperparameters")
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=Optional[kind],  # noqa: UP045 (typer reads this at runtime)
            )
        )
    return params


def build_hyperparameters(
    env_id: str | None, config: Path | None, flags: dict[str, Any]
) -> Hyperparameters:
    """Merge defaults, an optional YAML file and the flags that were given."""
    given = {k: v for k, v in flags.items() if v is not None}
    if "env_kwargs" in given:
        given["env_kwargs"] = json.loads(given["env_kwargs"])
    if env_id is not None:
        given["env_id"] = env_id
    if config is not None:
        return Hyperparameters.from_yaml(config, **given)
    return Hyperparameters.from_dict(given)


def train_command(
    env_id: Annotated[
        Optional[str],  # noqa: UP045 (typer reads annotations at runtime)
        typer.Argument(help="Gymnasium id, e.g. CartPole-v1 (or set env_id in --config)."),
    ] = None,
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--config", help="YAML file of hyperparameters."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue runs/<run-name> from its checkpoint.")
    ] = False,
    progress: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--progress/--no-progress", help="Live progress view (default: in a terminal)."
        ),
    ] = None,
    env_url: EnvUrlFlag = None,
    env_hosts: EnvHostsFlag = 0,
    env_hosts_dns: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="NAME:PORT",
            help="Train on every env server a DNS name resolves to (a Kubernetes headless"
            " Service), resolved again when one goes down; with --env-hosts N, keep N host"
            " slots.",
            rich_help_panel=FLEET_PANEL,
        ),
    ] = None,
    listen: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="[HOST:]PORT",
            help="Listen for env hosts that dial in (agentgpt env-server --connect"
            " ws://this-machine:PORT), for simulators no connection can reach; training"
            " starts once --env-hosts N (default 1) have connected.",
            rich_help_panel=FLEET_PANEL,
        ),
    ] = None,
    envs_per_host: EnvsPerHostFlag = None,
    api_key: ApiKeyFlag = None,
    fleet_timeout: FleetTimeoutFlag = 60.0,
    step_timeout: StepTimeoutFlag = 30.0,
    **flags: Any,
) -> None:
    """Train a GPT policy with PPO on a Gymnasium env, e.g. agentgpt train CartPole-v1.

    Envs run in this process by default; --env-hosts N runs them on N local env
    servers, --env-url on servers elsewhere (collected from asynchronously; a server
    that fails is retried while training goes on with the others).
    """
    if resume and not flags.get("run_name"):
        raise typer.BadParameter("--resume needs --run-name", param_hint="--resume")
    require("train", "torch", "tensorboard")
    from agentgpt.core.errors import EnvsUnavailable
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.remote import RemoteEnvError
    from agentgpt.train.run import (
        EnvHostsUnavailable,
        TrainingInterrupted,
        claim_run,
        saved_total_steps,
        train,
    )

    fleet = _fleet_options(
        env_url,
        env_hosts,
        envs_per_host,
        api_key,
        fleet_timeout,
        step_timeout,
        env_hosts_dns,
        listen,
    )

    if resume and flags.get("total_steps") is None:
        # A resumed run keeps its own budget unless --total-steps extends it.
        runs_dir = flags.get("runs_dir") or Hyperparameters.runs_dir
        flags["total_steps"] = saved_total_steps(runs_dir, flags["run_name"])
    hparams = build_hyperparameters(env_id, config, flags)

    try:
        with contextlib.ExitStack() as stack:
            envs = None
            if fleet is not None:
                hparams = claim_run(hparams)
                try:
                    envs = stack.enter_context(_open_fleet(hparams, fleet))
                except ValueError as exc:  # the servers' env cannot be trained as asked
                    typer.echo(f"Cannot train on the env servers: {exc}", err=True)
                    raise typer.Exit(1) from None
            result = train(
                hparams,
                resume=resume,
                envs=envs,
                show_progress=progress,
                team_envs=PETTINGZOO_ENVS,
            )
            host_lines = _host_lines(envs)
    except TrainingInterrupted as stop:
        typer.echo(f"Interrupted at step {stop.global_step}; checkpoint saved in {stop.run_dir}")
        raise typer.Exit(130) from None
    except EnvHostsUnavailable as stop:
        typer.echo(f"Training stopped: {stop}", err=True)
        raise typer.Exit(1) from None
    except (RemoteEnvError, EnvsUnavailable) as exc:
        typer.echo(f"Cannot train on the env servers: {exc}", err=True)
        raise typer.Exit(1) from None
    ret = result.metrics.get("mean_return", "")
    shown = f"{float(ret):.1f}" if ret != "" else "n/a"
    typer.echo(f"Trained {result.global_step} steps; recent mean return {shown}")
    for line in host_lines:
        typer.echo(line)
    typer.echo(f"Run saved in {result.run_dir}")
    typer.echo(f"Evaluate it with: agentgpt eval {result.run_dir} --episodes 20")


def _host_lines(envs: Any) -> list[str]:
    """The summary's line per env host (none for local envs)."""
    statuses = getattr(envs, "hosts", None)
    if not statuses:
        return []
    from agentgpt.hosts.fleet import host_report

    return host_report(statuses)


def _fleet_options(
    env_url: list[str] | None,
    env_hosts: int,
    envs_per_host: str | None,
    api_key: str | None,
    fleet_timeout: float,
    step_timeout: float,
    env_hosts_dns: str | None = None,
    listen: str | None = None,
) -> Any:
    """The FleetOptions the flags describe, or None to train on local envs."""
    if not env_url and not env_hosts and not env_hosts_dns and listen is None:
        if envs_per_host is not None:
            raise typer.BadParameter("needs --env-url or --env-hosts", param_hint="--envs-per-host")
        return None
    from agentgpt.hosts.fleet import FleetOptions

    counts = None
    if envs_per_host is not None:
        try:
            counts = [int(part) for part in envs_per_host.split(",")]
        except ValueError:
            raise typer.BadParameter(
                f"{envs_per_host!r} is not a number or a comma-separated list of numbers",
                param_hint="--envs-per-host",
            ) from None
    _show_fleet_logs()
    try:
        return FleetOptions(
            env_urls=list(env_url or []),
            env_hosts=env_hosts,
            envs_per_host=counts,
            api_key=api_key,
            fleet_timeout=fleet_timeout,
            step_timeout=step_timeout,
            env_hosts_dns=env_hosts_dns,
            listen=listen,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _open_fleet(hparams: Hyperparameters, options: Any) -> Any:
    """The env servers ``options`` describe, as a fleet of the run's envs (local hosts
    keep their logs in the run directory)."""
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.hosts.fleet import open_fleet
    from agentgpt.train.run import run_dir_of

    return open_fleet(
        hparams.env_id,
        options,
        num_envs=hparams.num_envs,
        seed=hparams.seed,
        env_kwargs=hparams.env_kwargs,
        register=PETTINGZOO_ENVS,
        log_dir=run_dir_of(hparams) / "env-hosts",
    )


def _show_fleet_logs() -> None:
    """Print env-host events (down, back, env errors) on stderr while training."""
    from agentgpt.core.logs import show_logs

    show_logs("agentgpt.fleet", logging.INFO, "%(asctime)s %(levelname)s %(message)s", "%X")


def _with_hyperparameter_flags(func):
    hints = typing.get_type_hints(func, include_extras=True)
    base = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(func).parameters.values()
        if p.name in _FIXED_PARAMS
    ]
    params = _hyperparameter_params()
    func.__signature__ = inspect.Signature([*base, *params])
    func.__annotations__ = {
        **{p.name: hints[p.name] for p in base},
        **{p.name: p.annotation for p in params},
    }
    return func


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train", no_args_is_help=True)(_with_hyperparameter_flags(train_command))
