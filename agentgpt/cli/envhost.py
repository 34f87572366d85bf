"""``agentgpt env-server``: host envs for remote clients.

Imports of the server (Starlette, uvicorn, Gymnasium) happen inside the command so that
``agentgpt --help`` stays instant.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer

from agentgpt.cli.server_flags import (
    ApiKeyFlag,
    ApiKeysFileFlag,
    DebugFlag,
    InsecureFlag,
    LogLevelFlag,
    configure_logging,
    read_keys,
)

__all__ = ["register", "is_loopback", "parse_registrations"]

_DEFAULT_HOST = "127.0.0.1"
_WILDCARDS = ("0.0.0.0", "::", "[::]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    from agentgpt.service.serving import is_loopback as loopback

    return loopback(host)


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


def unity_registrations(
    entries: list[str],
    *,
    editor: bool = False,
    base_port: int | None = None,
    no_graphics: bool = False,
    timeout_wait: int = 60,
    additional_args: list[str] | None = None,
) -> dict[str, Any]:
    """``--unity [NAME=]PATH`` entries and ``--unity-editor`` as name -> launcher;
    ``ValueError`` naming what is wrong (a missing build, a repeated name)."""
    from agentgpt.envhost.unity.launch import UnityLauncher

    launchers: dict[str, Any] = {}
    settings = {
        "no_graphics": no_graphics,
        "timeout_wait": timeout_wait,
        "additional_args": list(additional_args or []),
    }
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = "", entry
        name, path = name.strip(), path.strip()
        if not path:
            raise ValueError(f"--unity {entry!r}: give the path of a Unity build")
        name = name or Path(path).name.rsplit(".", 1)[0]
        if name in launchers:
            raise ValueError(f"--unity: the name {name!r} is given twice")
        launchers[name] = UnityLauncher(path, base_port=base_port, **settings)
    if editor:
        launchers["UnityEditor"] = UnityLauncher(None, base_port=base_port, **settings)
    return launchers


def env_server(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Use 0.0.0.0 to accept remote clients.")
    ] = _DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free port).")] = 8000,
    api_key: ApiKeyFlag = None,
    api_keys_file: ApiKeysFileFlag = None,
    register_env: Annotated[
        list[str] | None,
        typer.Option(
            "--register",
            help="Serve an env under NAME from a factory: NAME=package.module:factory"
            " (repeatable; Gymnasium or PettingZoo factories).",
        ),
    ] = None,
    unity: Annotated[
        list[str] | None,
        typer.Option(
            "--unity",
            help="Serve a Unity ML-Agents build: [NAME=]PATH to the player (Build.x86_64,"
            " .exe or .app; repeatable). NAME defaults to the file name without its ending."
            " Each /make starts one instance on a port of its own (docs/unity.md).",
            rich_help_panel="Unity",
        ),
    ] = None,
    unity_editor: Annotated[
        bool,
        typer.Option(
            "--unity-editor",
            help="Serve the Unity editor's scene as 'UnityEditor' (press Play after /make).",
            rich_help_panel="Unity",
        ),
    ] = False,
    unity_base_port: Annotated[
        int | None,
        typer.Option(
            help="First port of Unity instances (builds: 5005 and up; the editor: 5004).",
            min=1,
            max=65535,
            rich_help_panel="Unity",
        ),
    ] = None,
    unity_no_graphics: Annotated[
        bool,
        typer.Option(
            "--unity-no-graphics",
            help="Run builds with -nographics -batchmode (no camera observations then).",
            rich_help_panel="Unity",
        ),
    ] = False,
    unity_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds to wait for a Unity instance to answer.", min=10, rich_help_panel="Unity"
        ),
    ] = 60,
    unity_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--unity-arg",
            help="Command-line argument passed to every Unity build (repeatable).",
            rich_help_panel="Unity",
        ),
    ] = None,
    insecure: InsecureFlag = False,
    debug: DebugFlag = False,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest accepted request body, in bytes (413 above).", min=1)
    ] = 8 * 1024 * 1024,
    max_envs_per_key: Annotated[
        int,
        typer.Option(help="Sub-envs one API key may hold at once (429 above).", min=1),
    ] = 256,
    max_processes: Annotated[
        int | None,
        typer.Option(
            help="Env processes the server runs at once, over every key: an async vector env"
            " runs one per sub-env, and each env of a Unity build is one player (429 above;"
            " 0 refuses both). Default: the number of CPUs the server may use.",
            min=0,
        ),
    ] = None,
    allow_kwargs: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-kwargs",
            help="Env kwarg (by key) passed to envs although it names code, another env, a"
            " file or an address, or holds a 'module:attribute' string (repeatable; '*':"
            " every kwarg). See docs/protocol.md, 'Env kwargs'.",
        ),
    ] = None,
    inline_env: Annotated[
        list[str] | None,
        typer.Option(
            "--inline-env",
            help="Env name whose resets and steps run on the server's event loop, saving a"
            " thread hand-off per call: only for envs whose calls take microseconds"
            " (repeatable). One that takes over 5 ms in two calls in a row goes back to a"
            " thread.",
        ),
    ] = None,
    busy_poll_us: Annotated[
        float,
        typer.Option(
            help="Microseconds at most that a streaming connection whose requests follow"
            " each other that closely is polled for its next one before the server sleeps:"
            " saves tens of microseconds per step on virtual machines (0: never).",
            min=0.0,
        ),
    ] = 250.0,  # agentgpt.core.busy_poll.SERVER_LIMIT_S, without importing it for --help
    idle_timeout: Annotated[
        float,
        typer.Option(help="Seconds after which an untouched env is closed.", min=0.001),
    ] = 3600.0,
    head_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a connection has to send a complete request head; closed after.",
            min=0.001,
        ),
    ] = 10.0,
    keep_alive_timeout: Annotated[
        float,
        typer.Option(help="Seconds an idle connection is kept open between requests.", min=0.001),
    ] = 5.0,
    max_head_bytes: Annotated[
        int,
        typer.Option(
            help="Largest request head (request line and headers), in bytes (431 above).", min=256
        ),
    ] = 64 * 1024,
    max_connections: Annotated[
        int, typer.Option(help="Open connections in total (503 above).", min=1)
    ] = 512,
    max_connections_per_ip: Annotated[
        int, typer.Option(help="Open connections from one client IP address (503 above).", min=1)
    ] = 256,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Host name or address clients may use in the Host header besides loopback"
            " names (repeatable; '*': any). Without API keys only loopback names are accepted"
            " by default; with keys, any host unless this is given.",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="Web page origin allowed to call the server, e.g. https://app.example.com"
            " (repeatable; '*': any). Requests from web pages are refused otherwise.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="PEM certificate (chain) to serve HTTPS with; needs --tls-key.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            help="PEM private key of --tls-cert.", exists=True, dir_okay=False, readable=True
        ),
    ] = None,
    log_level: LogLevelFlag = "info",
    connect: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Dial out to a trainer listening at this URL (agentgpt train ... --listen"
            " PORT; ws://host:port or wss://) and serve it over that connection, instead of"
            " listening: no inbound port needed. Presents the first API key.",
            rich_help_panel="Hosting",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="With --connect: this host's name at the trainer (default: the machine's);"
            " a host that dials in again under its name takes its place back.",
            rich_help_panel="Hosting",
        ),
    ] = None,
    public_ip: Annotated[
        bool,
        typer.Option(
            "--public-ip",
            help="Serve on every interface with a required key (generated if none is given),"
            " report the LAN and public addresses, and print the train command"
            " (docs/hosting.md).",
            rich_help_panel="Hosting",
        ),
    ] = False,
    upnp: Annotated[
        bool,
        typer.Option(
            "--upnp",
            help="With --public-ip: ask the router to forward the port here (UPnP, the upnp"
            " extra); the mapping is removed on exit.",
            rich_help_panel="Hosting",
        ),
    ] = False,
    public_ip_service: Annotated[
        str,
        typer.Option(
            help="With --public-ip: URL that answers this network's public address ('' to"
            " skip the lookup).",
            rich_help_panel="Hosting",
        ),
    ] = "https://checkip.amazonaws.com",
    tunnel: Annotated[
        str | None,
        typer.Option(
            "--tunnel",
            metavar="ngrok|localtunnel",
            help="Serve behind a public https URL from a tunnel provider, with a required key"
            " (ngrok reads NGROK_AUTHTOKEN).",
            rich_help_panel="Hosting",
        ),
    ] = None,
    tunnel_host: Annotated[
        str | None,
        typer.Option(
            help="With --tunnel localtunnel: your own localtunnel server (default"
            " https://localtunnel.me); with --tunnel ngrok: a reserved domain.",
            rich_help_panel="Hosting",
        ),
    ] = None,
) -> None:
    """Host Gymnasium and PettingZoo envs over HTTP (see docs/protocol.md and
    docs/security.md)."""
    from agentgpt.envhost.server import EnvServer
    from agentgpt.service.connections import ConnectionLimits
    from agentgpt.service.serving import InsecureBindError, check_exposure

    configure_logging(log_level)

    keys = read_keys(api_key, api_keys_file)
    if public_ip or tunnel is not None or upnp or tunnel_host:
        from agentgpt.cli.launch import serve_launched

        serve_launched(
            public_ip=public_ip,
            tunnel=tunnel,
            tunnel_host=tunnel_host,
            upnp=upnp,
            port=port,
            keys=keys,
            register=parse_registrations(list(register_env or [])),
            public_ip_service=public_ip_service or None,
            options={
                "max_body_bytes": max_body_bytes,
                "max_envs_per_key": max_envs_per_key,
                "max_processes": max_processes,
                "allow_kwargs": allow_kwargs,
                "idle_timeout": idle_timeout,
                "head_timeout": head_timeout,
                "keep_alive_timeout": keep_alive_timeout,
                "max_head_bytes": max_head_bytes,
                "max_connections": max_connections,
                "max_connections_per_ip": max_connections_per_ip,
                "allow_host": allow_host,
                "allow_origin": allow_origin,
                "tls_cert": tls_cert,
                "tls_key": tls_key,
                "debug": debug,
                "log_level": log_level,
            },
        )
        return
    try:
        check_exposure(host, bool(keys), insecure)
    except InsecureBindError:
        typer.echo(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could"
            " run envs on this machine. Pass --api-key KEY (or set AGENTGPT_API_KEYS, or"
            " --api-keys-file), or --insecure if the network is trusted.",
            err=True,
        )
        raise typer.Exit(code=2) from None
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together", param_hint="--tls-key")
    allowed_hosts = list(allow_host or [])
    if not keys and not is_loopback(host):
        if host.strip() not in _WILDCARDS:
            allowed_hosts.append(host)  # clients name the address the server listens on
        elif not allowed_hosts:
            typer.echo(
                "Without an API key the server answers only to loopback host names: pass"
                " --allow-host for each name or address clients use to reach it.",
                err=True,
            )
    try:
        limits = ConnectionLimits(
            head_timeout=head_timeout,
            keep_alive_timeout=keep_alive_timeout,
            max_head_bytes=max_head_bytes,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
        )
    except ValueError as exc:
        typer.echo(f"Cannot start the env server: {exc}", err=True)
        raise typer.Exit(code=2) from None
    registrations: dict[str, Any] = dict(parse_registrations(list(register_env or [])))
    try:
        registrations.update(
            unity_registrations(
                list(unity or []),
                editor=unity_editor,
                base_port=unity_base_port,
                no_graphics=unity_no_graphics,
                timeout_wait=unity_timeout,
                additional_args=list(unity_arg or []),
            )
        )
    except ValueError as exc:
        typer.echo(f"Cannot start the env server: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if (unity or unity_editor) and importlib.util.find_spec("mlagents_envs") is None:
        from agentgpt.envhost.unity.launch import mlagents_missing_message

        typer.echo(f"Cannot start the env server: {mlagents_missing_message()}.", err=True)
        raise typer.Exit(code=1)
    try:
        server = EnvServer(
            api_keys=keys,
            register=registrations,
            max_body_bytes=max_body_bytes,
            max_envs_per_key=max_envs_per_key,
            idle_timeout=idle_timeout,
            debug=debug,
            max_processes=max_processes,
            allow_kwargs=list(allow_kwargs or []),
            allowed_hosts=allowed_hosts,
            allowed_origins=list(allow_origin or []),
            inline_envs=list(inline_env or []),
            busy_poll_us=busy_poll_us,
        )
    except ValueError as exc:
        typer.echo(f"Cannot start the env server: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if not keys:
        typer.echo("No API key configured: every client is accepted.", err=True)
    else:
        typer.echo(f"{len(server.keys)} API key(s) configured.", err=True)
    if connect is not None:
        from agentgpt.envhost.dial import default_host_name
        from agentgpt.protocol.dialing import check_host_name

        try:
            host_name = check_host_name(name or default_host_name())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--name") from None
        typer.echo(f"Dialling the trainer at {connect} as {host_name!r}", err=True)
        server.connect(connect, keys[0] if keys else None, host_name)
        return
    server.run(
        host=host,
        port=port,
        log_level=log_level,
        insecure=insecure,
        limits=limits,
        tls_cert=None if tls_cert is None else str(tls_cert),
        tls_key=None if tls_key is None else str(tls_key),
    )


def register(app: typer.Typer) -> None:
    """Add the ``env-server`` command to the ``agentgpt`` CLI."""
    app.command("env-server")(env_server)
