"""``agentgpt serve``: serve a trained agent's actions over HTTP (docs/serving.md).

The server (Starlette, uvicorn, torch) is imported inside the command so that
``agentgpt --help`` stays instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from agentgpt.cli.envhost import is_loopback
from agentgpt.cli.extras import require
from agentgpt.cli.server_flags import (
    ApiKeyFlag,
    ApiKeysFileFlag,
    DebugFlag,
    InsecureFlag,
    LogLevelFlag,
    configure_logging,
    read_keys,
)

__all__ = ["register", "serve_command"]

_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = 8000
#: SageMaker's inference container contract: the model, the port, every address.
_SAGEMAKER_MODEL_DIR = "/opt/ml/model"
_SAGEMAKER_PORT = 8080


def _container_model_dir() -> Path | None:
    """The model directory of a SageMaker inference container, when this is one."""
    path = Path(os.environ.get("SM_MODEL_DIR", _SAGEMAKER_MODEL_DIR))
    return path if path.is_dir() else None


def serve_command(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Run directory (or model directory holding checkpoint.pt). Left out inside"
            " a SageMaker inference container: the model in /opt/ml/model, served on"
            " 0.0.0.0:8080.",
            file_okay=False,
            dir_okay=True,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (default 127.0.0.1). 0.0.0.0 accepts remote clients."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default 8000; 0 picks a free port).")
    ] = None,
    api_key: ApiKeyFlag = None,
    api_keys_file: ApiKeysFileFlag = None,
    insecure: InsecureFlag = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Reload the newest checkpoint while a training run writes it, without"
            " dropping a request.",
        ),
    ] = False,
    watch_interval: Annotated[
        float, typer.Option(help="Seconds between checks for a new checkpoint.", min=0.05)
    ] = 2.0,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            help="While several clients call, hold a forward pass open this long for their"
            " calls to join it (0: merge only the calls already waiting).",
            min=0,
        ),
    ] = 0.0,
    inline_pass_ms: Annotated[
        float,
        typer.Option(
            help="Run forward passes on the event loop while they take at most this many"
            " ms of CPU (a moving average), else on an inference thread (0: always on the"
            " thread). Short passes gain nothing from a thread: they would trade the GIL"
            " with the loop.",
            min=0,
        ),
    ] = 5.0,
    max_agents: Annotated[
        int, typer.Option(help="Agents the server holds at once (429 above).", min=1)
    ] = 1024,
    max_agents_per_session: Annotated[
        int | None,
        typer.Option(help="Agents one session may hold (default: --max-agents).", min=1),
    ] = None,
    agent_idle_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds after which an idle agent is forgotten (its next observation"
            " starts a new context).",
            min=0.001,
        ),
    ] = 600.0,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest accepted request body, in bytes (413 above).", min=1)
    ] = 6 * 1024 * 1024,
    seed: Annotated[int, typer.Option(help="Seeds random actions (per session).")] = 0,
    debug: DebugFlag = False,
    log_level: LogLevelFlag = "info",
) -> None:
    """Serve a trained agent's actions over HTTP (see docs/serving.md)."""
    require("serve", "torch")
    configure_logging(log_level)
    keys = read_keys(api_key, api_keys_file)

    container = False
    if run_dir is None:
        run_dir = _container_model_dir()
        if run_dir is None:
            typer.echo(
                "Give a run directory to serve (agentgpt serve runs/<name>); only inside a"
                f" SageMaker container is it read from {_SAGEMAKER_MODEL_DIR}.",
                err=True,
            )
            raise typer.Exit(code=2)
        container = True
    host = host or ("0.0.0.0" if container else _DEFAULT_HOST)
    port = (
        _SAGEMAKER_PORT
        if port is None and container
        else (port if port is not None else _DEFAULT_PORT)
    )
    # SageMaker authenticates callers itself and strips Authorization headers.
    if not keys and not is_loopback(host) and not insecure and not container:
        typer.echo(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could"
            " use the model. Pass --api-key KEY (or set AGENTGPT_API_KEYS, or"
            " --api-keys-file), or --insecure if the network is trusted.",
            err=True,
        )
        raise typer.Exit(code=2)

    from agentgpt.serve.server import PolicyServer

    try:
        server = PolicyServer(
            run_dir,
            api_keys=keys,
            max_body_bytes=max_body_bytes,
            max_agents=max_agents,
            max_agents_per_session=max_agents_per_session,
            agent_idle_timeout=agent_idle_timeout,
            batch_wait=batch_wait_ms / 1000.0,
            inline_pass_limit=inline_pass_ms / 1000.0,
            watch=watch,
            watch_interval=watch_interval,
            seed=seed,
            debug=debug,
        )
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"Cannot serve {run_dir}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if not keys:
        typer.echo("No API key configured: every client is accepted.", err=True)
    else:
        typer.echo(f"{len(server.keys)} API key(s) configured.", err=True)
    server.run(host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``agentgpt`` CLI."""
    app.command("serve")(serve_command)
