"""``agentgpt env-server --public-ip`` and ``--tunnel``: serve envs to trainers elsewhere.

The command starts the env server through the launchers of :mod:`agentgpt.hosts.launch`,
prints where trainers reach it (and the generated key, once), then waits for Ctrl-C or
SIGTERM and closes everything it opened: the server, the tunnel, the router mapping.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import typer

__all__ = ["print_launch", "serve_launched", "server_args", "stop_signals"]


def server_args(options: Mapping[str, Any]) -> list[str]:
    """``env-server`` options as command-line arguments: ``--name value`` for each value
    that is set, ``--name`` for a true flag, once per item of a list."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (handlers restored after)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def print_launch(hosts: Any, env_id: str | None, key_generated: bool) -> None:
    """The handle's notes, the key once when it was generated, and the train line."""
    for note in hosts.notes:
        typer.echo(note, err=True)
    if key_generated:
        typer.echo("", err=True)
        typer.echo("API key (shown once; clients need it):", err=True)
        typer.echo(f"    {hosts.api_key}", err=True)
    typer.echo("", err=True)
    typer.echo("Train on it (with AGENTGPT_API_KEY set to the key):", err=True)
    typer.echo(f"    {hosts.train_command(env_id)}")


def serve_launched(
    *,
    public_ip: bool,
    tunnel: str | None,
    tunnel_host: str | None,
    upnp: bool,
    port: int,
    keys: Sequence[str],
    register: Mapping[str, str],
    options: Mapping[str, Any],
    public_ip_service: str | None,
) -> None:
    """Launch, report, wait for a stop signal, close. Exits 2 on bad input."""
    from agentgpt.hosts.launch import launch_on_local_with_ip, launch_on_local_with_url
    from agentgpt.hosts.served import PortInUseError
    from agentgpt.hosts.tunnels import TunnelError

    if public_ip and tunnel is not None:
        raise typer.BadParameter("give --public-ip or --tunnel, not both", param_hint="--tunnel")
    if upnp and not public_ip:
        raise typer.BadParameter("--upnp goes with --public-ip", param_hint="--upnp")
    if tunnel_host and tunnel is None:
        raise typer.BadParameter("--tunnel-host goes with --tunnel", param_hint="--tunnel-host")
    if len(keys) > 1:
        raise typer.BadParameter(
            "with --public-ip or --tunnel, give one key (it is the one trainers use)",
            param_hint="--api-key",
        )
    if tunnel is not None and (options.get("tls_cert") or options.get("tls_key")):
        raise typer.BadParameter(
            "a tunnel serves https itself; drop --tls-cert/--tls-key", param_hint="--tunnel"
        )
    api_key = keys[0] if keys else None
    args = server_args(options)
    try:
        if public_ip:
            hosts = launch_on_local_with_ip(
                port=port,
                api_key=api_key,
                register=register,
                server_args=args,
                upnp=upnp,
                public_ip_service=public_ip_service,
            )
        else:
            hosts = launch_on_local_with_url(
                tunnel=tunnel or "localtunnel",
                tunnel_host=tunnel_host,
                port=port,
                api_key=api_key,
                register=register,
                server_args=args,
            )
    except (PortInUseError, TunnelError, ValueError) as exc:
        typer.echo(f"Cannot start the env server: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except RuntimeError as exc:
        typer.echo(f"The env server did not start: {exc}", err=True)
        raise typer.Exit(code=1) from None
    try:
        with stop_signals() as stop:
            # One registered env: that is what trainers will ask for.
            env_id = next(iter(register)) if len(register) == 1 else None
            print_launch(hosts, env_id, hosts.key_generated)
            typer.echo(f"Server log: {hosts.details['log_path']}", err=True)
            typer.echo("Serving; press Ctrl-C to stop.", err=True)
            while not stop.wait(0.5):
                if not hosts.running():
                    typer.echo("The env server exited; closing.", err=True)
                    raise typer.Exit(code=1)
    finally:
        hosts.close()
        typer.echo("Stopped; everything opened for the server is closed.", err=True)
