"""Serving envs on this machine to trainers elsewhere: on a public IP or through a tunnel.

Both launches start one ``agentgpt env-server`` child with a required API key (generated
when none is given) and return a :class:`LaunchedEnvHosts` handle: the URL(s) to give a
trainer, the key, notes for the user, and ``close()``, which stops the server and undoes
whatever was opened for it (a router mapping, a tunnel). ``close()`` also runs at
interpreter exit, and the server child dies with its parent.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentgpt.hosts.network import (
    DEFAULT_PUBLIC_IP_SERVICE,
    UpnpError,
    UpnpMapping,
    is_public,
    lan_address,
    public_address,
)
from agentgpt.hosts.provider import HostProvider
from agentgpt.hosts.served import ServedEnvServer, free_port
from agentgpt.hosts.tunnels import Tunnel, make_tunnel

__all__ = [
    "API_KEY_ENV",
    "LaunchedEnvHosts",
    "generate_api_key",
    "launch_on_local_with_ip",
    "launch_on_local_with_url",
    "train_command",
]

log = logging.getLogger("agentgpt.hosts")

#: The variable a trainer reads the env servers' key from.
API_KEY_ENV = "AGENTGPT_API_KEY"


def generate_api_key() -> str:
    """A strong key: 32 random bytes, URL-safe text (no commas or spaces)."""
    return secrets.token_urlsafe(32)


def check_api_key(api_key: str) -> str:
    if not api_key or any(ch.isspace() or ch == "," for ch in api_key):
        raise ValueError("the API key must be non-empty, without whitespace or commas")
    if len(api_key) < 16:
        raise ValueError("the API key is too short to guard a public server: use 16+ characters")
    return api_key


def train_command(env_id: str | None, urls: Sequence[str]) -> str:
    """The ``agentgpt train`` line for these URLs. It never carries the key: the trainer
    reads it from ``AGENTGPT_API_KEY``."""
    line = f"agentgpt train {env_id or 'ENV_ID'}"
    for url in urls:
        line += f" --env-url {url}"
    return line


class LaunchedEnvHosts(HostProvider):
    """Env servers launched for trainers elsewhere, and everything opened for them.

    ``urls``: what to give a trainer. ``api_key``: the key the servers require (never
    printed by the handle itself). ``notes``: lines for the user (addresses found, NAT,
    mappings). ``close()`` undoes everything, in reverse order; safe to call again.
    """

    def __init__(
        self,
        urls: Sequence[str],
        api_key: str,
        *,
        env_id: str | None = None,
        notes: Sequence[str] = (),
        undo: Sequence[Callable[[], None]] = (),
        key_generated: bool = False,
        details: Mapping[str, Any] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._urls = list(urls)
        self._alive = alive
        self.api_key = api_key
        self.env_id = env_id
        self.notes = list(notes)
        self.key_generated = key_generated
        #: Mode-specific facts (lan_url, public_url, tunnel, instance ids ...).
        self.details = dict(details or {})
        self._undo = list(undo)
        self._closed = False
        atexit.register(self.close)

    @property
    def urls(self) -> list[str]:
        return list(self._urls)

    def start(self) -> LaunchedEnvHosts:
        if self._closed:
            raise RuntimeError("these env hosts are closed; launch new ones")
        return self

    def train_command(self, env_id: str | None = None) -> str:
        """The ready ``agentgpt train ... --env-url ...`` line (without the key)."""
        return train_command(env_id or self.env_id, self._urls)

    def running(self) -> bool:
        """Whether the servers still run (as far as this process can tell)."""
        return not self._closed and (self._alive is None or self._alive())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception as exc:  # undo the rest regardless
                log.warning("while closing the env hosts: %s", exc)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"LaunchedEnvHosts({self._urls!r}, {state})"


def _server_options(
    api_key: str | None,
    register: Mapping[str, str] | None,
    server_args: Sequence[str],
) -> tuple[str, bool, dict[str, str], list[str]]:
    generated = api_key is None
    key = generate_api_key() if api_key is None else check_api_key(api_key)
    return key, generated, dict(register or {}), list(server_args)


def launch_on_local_with_ip(
    env_id: str | None = None,
    *,
    port: int = 8000,
    api_key: str | None = None,
    register: Mapping[str, str] | None = None,
    server_args: Sequence[str] = (),
    upnp: bool = False,
    public_ip_service: str | None = DEFAULT_PUBLIC_IP_SERVICE,
    bind: str = "0.0.0.0",
    startup_timeout: float = 60.0,
    upnp_client: Any = None,
) -> LaunchedEnvHosts:
    """Serve envs on every interface of this machine, with a required API key.

    ``api_key``: the key clients must send (generated when None: read it from the
    handle's ``api_key`` and show it once). ``upnp``: ask the router to forward ``port``
    here (the ``upnp`` extra), removed on close. ``public_ip_service``: where to learn
    the public address (None: do not look it up). The handle's ``urls`` is the public
    URL when the server is reachable from the internet (a public address of its own, or
    a mapping), else the LAN URL; ``details`` holds ``lan_url``, ``public_url``,
    ``behind_nat`` and ``upnp``; ``notes`` says plainly what was found.
    """
    key, generated, registrations, args = _server_options(api_key, register, server_args)
    port = free_port() if port == 0 else int(port)
    server = ServedEnvServer(
        bind, port, key, register=registrations, server_args=args, startup_timeout=startup_timeout
    )
    undo: list[Callable[[], None]] = []
    try:
        server.start()
        undo.append(server.close)
        lan = lan_address()
        public = public_address(public_ip_service)
        scheme = server.scheme
        notes = [f"LAN address: {scheme}://{lan}:{port}"]
        mapping: UpnpMapping | None = None
        if upnp:
            try:
                mapping = UpnpMapping(port, upnp=upnp_client).open()
                undo.append(mapping.close)
                public = mapping.external_address or public
                notes.append(
                    f"The router forwards port {port} to {mapping.lan_address}:{port} (UPnP);"
                    " the mapping is removed when the server stops."
                )
            except UpnpError as exc:
                notes.append(f"UPnP: {exc}.")
        own_public = is_public(lan)
        reachable = own_public or mapping is not None
        behind_nat = public is not None and not own_public and public != lan
        public_url = f"{scheme}://{public}:{port}" if public else None
        if own_public:
            public_url = f"{scheme}://{lan}:{port}"
        if public_url:
            notes.append(f"Public address: {public_url}")
        else:
            notes.append("Public address: unknown (the lookup failed or was turned off).")
        if behind_nat and mapping is None:
            notes.append(
                f"This machine is behind NAT (public {public}, LAN {lan}) and no port mapping"
                " is open: trainers outside this network cannot reach it. Forward the port"
                " on the router (or pass --upnp), or use a tunnel instead: agentgpt"
                " env-server --tunnel localtunnel (or --tunnel ngrok)."
            )
        if reachable and public_url:
            notes.append(
                f"Make sure a firewall lets TCP port {port} in; only trainers with the API key"
                " can use the server."
            )
        url = public_url if reachable and public_url else f"{scheme}://{lan}:{port}"
        return LaunchedEnvHosts(
            [url],
            key,
            env_id=env_id,
            notes=notes,
            undo=undo,
            key_generated=generated,
            alive=server.running,
            details={
                "lan_url": f"{scheme}://{lan}:{port}",
                "public_url": public_url,
                "behind_nat": behind_nat,
                "upnp": mapping is not None,
                "local_url": server.local_url,
                "log_path": str(server.log_path),
            },
        )
    except BaseException:
        for step in reversed(undo):
            with contextlib.suppress(Exception):
                step()
        server.close()
        raise


def launch_on_local_with_url(
    env_id: str | None = None,
    *,
    tunnel: str | Tunnel = "localtunnel",
    tunnel_host: str | None = None,
    subdomain: str | None = None,
    port: int = 0,
    api_key: str | None = None,
    register: Mapping[str, str] | None = None,
    server_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    ngrok_authtoken: str | None = None,
) -> LaunchedEnvHosts:
    """Serve envs on loopback behind a public https URL from a tunnel provider.

    ``tunnel``: "localtunnel" (``tunnel_host`` names a self-hosted server; by default
    https://localtunnel.me), "ngrok" (``NGROK_AUTHTOKEN`` or ``ngrok_authtoken``;
    ``tunnel_host`` is a reserved domain), or a :class:`~agentgpt.hosts.tunnels.Tunnel`
    built for ``port``. The key is required all the same: a public URL is public. The
    tunnel closes with the server.
    """
    key, generated, registrations, args = _server_options(api_key, register, server_args)
    if isinstance(tunnel, Tunnel):
        port = tunnel.port
    port = free_port() if port == 0 else int(port)
    opened = (
        tunnel
        if isinstance(tunnel, Tunnel)
        else make_tunnel(
            tunnel, port, host=tunnel_host, subdomain=subdomain, authtoken=ngrok_authtoken
        )
    )
    server = ServedEnvServer(
        "127.0.0.1",
        port,
        key,
        register=registrations,
        server_args=args,
        startup_timeout=startup_timeout,
    )
    opened.check()
    undo: list[Callable[[], None]] = []
    try:
        server.start()
        undo.append(server.close)
        url = opened.open()
        undo.append(opened.close)
        notes = [f"Public URL ({opened.name}): {url}", f"Local URL: {server.local_url}"]
        return LaunchedEnvHosts(
            [url],
            key,
            env_id=env_id,
            notes=notes,
            undo=undo,
            key_generated=generated,
            alive=server.running,
            details={
                "tunnel": opened.name,
                "public_url": url,
                "local_url": server.local_url,
                "log_path": str(server.log_path),
            },
        )
    except BaseException:
        with contextlib.suppress(Exception):
            opened.close()
        server.close()
        raise
