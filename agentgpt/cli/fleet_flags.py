"""The flags that point a command at env servers, shared by ``train`` and ``tune``.

Both commands reach env servers the same way (``agentgpt.hosts.fleet.FleetOptions``), so
their flags are declared once here, with one help text each, and read the same.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

__all__ = [
    "FLEET_PANEL",
    "ApiKeyFlag",
    "EnvHostsFlag",
    "EnvUrlFlag",
    "EnvsPerHostFlag",
    "FleetTimeoutFlag",
    "StepTimeoutFlag",
]

#: The help panel the flags are listed under.
FLEET_PANEL = "Env servers"

EnvUrlFlag = Annotated[
    Optional[list[str]],  # noqa: UP045 (typer reads annotations at runtime)
    typer.Option(
        "--env-url",
        metavar="URL",
        help="Train on the env server at this URL (repeatable, one per server).",
        rich_help_panel=FLEET_PANEL,
    ),
]
EnvHostsFlag = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Start this many env servers on this machine (for each run) and train on them.",
        min=0,
        rich_help_panel=FLEET_PANEL,
    ),
]
EnvsPerHostFlag = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        metavar="N[,N...]",
        help="Envs on each server: one number, or one per server ('16,32').",
        rich_help_panel=FLEET_PANEL,
    ),
]
ApiKeyFlag = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        metavar="KEY",
        help="Bearer key of the env servers (prefer the AGENTGPT_API_KEY variable:"
        " command lines are visible to other users).",
        envvar="AGENTGPT_API_KEY",
        show_envvar=False,
        rich_help_panel=FLEET_PANEL,
    ),
]
FleetTimeoutFlag = Annotated[
    float,
    typer.Option(
        help="Seconds every env server may be down before a run stops (with a checkpoint).",
        min=0.001,
        rich_help_panel=FLEET_PANEL,
    ),
]
StepTimeoutFlag = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        help="Seconds a server may take to answer one step before it counts as down.",
        min=0.001,
        rich_help_panel=FLEET_PANEL,
    ),
]
