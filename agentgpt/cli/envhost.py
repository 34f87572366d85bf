"""``agentgpt env-server``: host envs for remote clients.

Imports of the server (Starlette, uvicorn, Gymnasium) happen inside the command so that
``agentgpt --help`` stays instant.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "is_loopback", "parse_registrations"]

_DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def parse_registrations(entries: list[str]) -> dict[str, str]:
    """``["NAME=package.module:factory", ...]`` as a name -> factory-string map."""
    registrations: dict[str, str] = {}
    for entry in entries:
        name, sep, factory = entry.partition("=")
        name, factory = name.strip(), factory.strip()
        if not sep or not name or ":" not in factory:
            raise typer.BadParameter(
                f"{entry!r} must look like NAME=package.module:factory", param_hint="--register"
            )
        registrations[name] = factory
    return registrations


def _configure_logging(level: str) -> None:
    """Show the server's own messages (envs made and closed, env errors) like uvicorn's."""
    from agentgpt.core.logs import show_logs

    numeric = logging.getLevelName(level.upper())
    # uvicorn's "trace" level has no logging name: show everything then.
    show_logs(
        "agentgpt",
        numeric if isinstance(numeric, int) else logging.DEBUG,
        "%(levelname)s:     %(message)s",
    )


def env_server(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Use 0.0.0.0 to accept remote clients.")
    ] = _DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free port).")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accepted bearer key (repeatable). Also read from AGENTGPT_API_KEYS"
            " (comma separated) and --api-keys-file, which keep keys out of the process list.",
        ),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            help="File with one accepted key per line ('#' comments allowed).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    register_env: Annotated[
        list[str] | None,
        typer.Option(
            "--register",
            help="Serve an env under NAME from a factory: NAME=package.module:factory"
            " (repeatable; Gymnasium or PettingZoo factories).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Allow listening on a non-loopback address without any API key."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Include tracebacks in error responses.")
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest accepted request body, in bytes (413 above).", min=1)
    ] = 8 * 1024 * 1024,
    max_envs_per_key: Annotated[
        int,
        typer.Option(help="Sub-envs one API key may hold at once (429 above).", min=1),
    ] = 256,
    idle_timeout: Annotated[
        float,
        typer.Option(help="Seconds after which an untouched env is closed.", min=0.001),
    ] = 3600.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Host Gymnasium and PettingZoo envs over HTTP (see docs/protocol.md)."""
    from agentgpt.envhost.server import EnvServer
    from agentgpt.service.keys import keys_from_env, keys_from_file

    _configure_logging(log_level)

    keys = list(api_key or []) + keys_from_env()
    if api_keys_file is not None:
        keys += keys_from_file(api_keys_file)
    if not keys and not is_loopback(host) and not insecure:
        typer.echo(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could"
            " run envs on this machine. Pass --api-key KEY (or set AGENTGPT_API_KEYS, or"
            " --api-keys-file), or --insecure if the network is trusted.",
            err=True,
        )
        raise typer.Exit(code=2)
    registrations = parse_registrations(list(register_env or []))
    try:
        server = EnvServer(
            api_keys=keys,
            register=registrations,
            max_body_bytes=max_body_bytes,
            max_envs_per_key=max_envs_per_key,
            idle_timeout=idle_timeout,
            debug=debug,
        )
    except ValueError as exc:
        typer.echo(f"Cannot start the env server: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if not keys:
        typer.echo("No API key configured: every client is accepted.", err=True)
    else:
        typer.echo(f"{len(server.keys)} API key(s) configured.", err=True)
    server.run(host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add the ``env-server`` command to the ``agentgpt`` CLI."""
    app.command("env-server")(env_server)
