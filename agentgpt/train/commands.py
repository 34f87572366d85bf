"""``agentgpt train``: the one-line trainer on the command line.

Every field of :class:`~agentgpt.train.hyperparameters.Hyperparameters` is a flag
(``--learning-rate 3e-4``, ``--no-normalize-obs``), generated from the dataclass so the
two never drift apart. Precedence: defaults < ``--config file.yaml`` < flags. torch is
imported inside the command only, so the CLI loads on machines without it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentgpt.train.hyperparameters import Hyperparameters

_FIXED_PARAMS = ("env_id", "config", "resume", "progress")


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
    **flags: Any,
) -> None:
    """Train a GPT policy with PPO on a Gymnasium env, e.g. agentgpt train CartPole-v1."""
    if resume and not flags.get("run_name"):
        raise typer.BadParameter("--resume needs --run-name", param_hint="--resume")
    from agentgpt.train.run import TrainingInterrupted, saved_total_steps, train

    if resume and flags.get("total_steps") is None:
        # A resumed run keeps its own budget unless --total-steps extends it.
        runs_dir = flags.get("runs_dir") or Hyperparameters.runs_dir
        flags["total_steps"] = saved_total_steps(runs_dir, flags["run_name"])
    hparams = build_hyperparameters(env_id, config, flags)

    try:
        result = train(hparams, resume=resume, show_progress=progress)
    except TrainingInterrupted as stop:
        typer.echo(f"Interrupted at step {stop.global_step}; checkpoint saved in {stop.run_dir}")
        raise typer.Exit(130) from None
    ret = result.metrics.get("mean_return", "")
    shown = f"{float(ret):.1f}" if ret != "" else "n/a"
    typer.echo(f"Trained {result.global_step} steps; recent mean return {shown}")
    typer.echo(f"Run saved in {result.run_dir}")
    typer.echo(f"Evaluate it with: agentgpt eval {result.run_dir} --episodes 20")


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
