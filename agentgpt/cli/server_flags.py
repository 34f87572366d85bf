"""The flags of every command that runs a server (``env-server``, ``serve``): keys,
exposure, errors and logs, declared once so the servers read them the same way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ApiKeyFlag",
    "ApiKeysFileFlag",
    "DebugFlag",
    "InsecureFlag",
    "LogLevelFlag",
    "configure_logging",
    "read_keys",
]

ApiKeyFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--api-key",
        help="Accepted bearer key (repeatable). Also read from AGENTGPT_API_KEYS"
        " (comma separated) and --api-keys-file, which keep keys out of the process list.",
    ),
]
ApiKeysFileFlag = Annotated[
    Path | None,
    typer.Option(
        help="File with one accepted key per line ('#' comments allowed).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
InsecureFlag = Annotated[
    bool,
    typer.Option(
        "--insecure", help="Allow listening on a non-loopback address without any API key."
    ),
]
DebugFlag = Annotated[bool, typer.Option("--debug", help="Include tracebacks in error responses.")]
LogLevelFlag = Annotated[str, typer.Option(help="uvicorn log level.")]


def read_keys(api_key: list[str] | None, api_keys_file: Path | None) -> list[str]:
    """The keys of ``--api-key``, ``AGENTGPT_API_KEYS`` and ``--api-keys-file``."""
    from agentgpt.service.keys import keys_from_env, keys_from_file

    keys = list(api_key or []) + keys_from_env()
    if api_keys_file is not None:
        keys += keys_from_file(api_keys_file)
    return keys


def configure_logging(level: str) -> None:
    """Show the server's own messages (envs made and closed, errors) like uvicorn's."""
    from agentgpt.core.logs import show_logs

    numeric = logging.getLevelName(level.upper())
    # uvicorn's "trace" level has no logging name: show everything then.
    show_logs(
        "agentgpt",
        numeric if isinstance(numeric, int) else logging.DEBUG,
        "%(levelname)s:     %(message)s",
    )
