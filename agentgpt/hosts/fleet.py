"""Where training envs come from when they run on env servers: URLs or local hosts.

:class:`FleetOptions` is kept apart from the trainer's hyperparameters on purpose: it
names machines and carries an API key, neither of which belongs in a run's saved
hyperparameters (a resumed run may use other hosts, and keys never go to disk). The
trainer never sees it: the faces (``agentgpt train``, ``AgentGPT.train``) open the hosts
with :func:`open_fleet` and hand the resulting fleet to the trainer as its envs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgpt.hosts.provider import HostProvider, RunningHosts

__all__ = [
    "API_KEY_ENV",
    "FleetOptions",
    "host_provider",
    "host_report",
    "open_fleet",
    "split_envs",
]

#: Environment variable read for the env servers' key when no key is given explicitly.
API_KEY_ENV = "AGENTGPT_API_KEY"

log = logging.getLogger("agentgpt.fleet")


@dataclass
class FleetOptions:
    """How to reach the env servers a run trains on.

    ``env_urls``: servers that are already running (one URL per server). ``env_hosts``:
    instead, start this many env servers on this machine (child processes on free
    loopback ports, with a generated key) and stop them at the end. ``envs_per_host``:
    one number for every host or one per host; by default the run's ``num_envs`` is split
    evenly. For multi-agent envs this counts envs, each contributing one sequence per
    agent. ``fleet_timeout``: seconds every host may be down before training stops
    with a checkpoint. ``step_timeout``: seconds a host may take to answer one step
    before it is considered down. ``env_hosts_dns``: instead of URLs, ``NAME:PORT`` of a
    headless Service: every address the name resolves to is one env host, resolved again
    when a host goes down (``env_hosts`` then sets the number of host slots; by default
    one per address found at the start). ``listen``: instead, ``[HOST:]PORT`` to listen
    on for env hosts that dial in (``agentgpt env-server --connect``); training starts
    once ``env_hosts`` of them (default 1) have connected.
    """

    env_urls: Sequence[str] = ()
    env_hosts: int = 0
    envs_per_host: Sequence[int] | None = None
    api_key: str | None = None
    fleet_timeout: float = 60.0
    step_timeout: float = 30.0
    env_hosts_dns: str | None = None
    listen: str | None = None

    def __post_init__(self) -> None:
        if self.listen is not None:
            parse_listen(self.listen)
            if self.env_urls or self.env_hosts_dns:
                raise ValueError("listening for env hosts excludes env URLs and a DNS name")
        if self.env_hosts_dns is not None:
            from agentgpt.hosts.dns import parse_dns_target

            if self.env_urls:
                raise ValueError("give either env URLs or a DNS name of env hosts, not both")
            parse_dns_target(self.env_hosts_dns)
        elif self.env_urls and self.env_hosts:
            raise ValueError("give either env URLs or a number of local env hosts, not both")
        if self.env_hosts < 0:
            raise ValueError("env_hosts must be positive")
        if not (self.env_urls or self.env_hosts or self.env_hosts_dns or self.listen):
            raise ValueError("give env URLs or a number of local env hosts")
        if self.envs_per_host is not None:
            counts = list(self.envs_per_host)
            if any(c < 1 for c in counts):
                raise ValueError("envs_per_host must be positive")
            hosts = len(self.env_urls) or self.env_hosts
            if len(counts) not in (1, hosts):
                raise ValueError(
                    f"envs_per_host has {len(counts)} numbers for {hosts} hosts; give one "
                    "number for every host or one per host"
                )
        if self.fleet_timeout <= 0 or self.step_timeout <= 0:
            raise ValueError("fleet_timeout and step_timeout must be positive")

    @property
    def num_hosts(self) -> int:
        return len(self.env_urls) or self.env_hosts


def parse_listen(value: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as (host, port); the host is 127.0.0.1 when left out."""
    host, _, port = str(value).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen takes [HOST:]PORT, got {value!r}")
    return host, int(port)


def split_envs(total: int, hosts: int) -> list[int]:
    """``total`` envs spread over ``hosts`` as evenly as possible (at least one each)."""
    base = max(1, total // hosts)
    extra = max(0, total - base * hosts)
    return [base + (1 if i < extra else 0) for i in range(hosts)]


def _per_host(options: FleetOptions, num_envs: int, hosts: int | None = None) -> list[int]:
    hosts = hosts or options.num_hosts
    if options.envs_per_host is None:
        return split_envs(num_envs, hosts)
    counts = list(options.envs_per_host)
    return counts * hosts if len(counts) == 1 else counts


def host_provider(
    options: FleetOptions,
    *,
    register: Mapping[str, str] | None = None,
    log_dir: str | Path | None = None,
    inline_envs: Sequence[str] = (),
) -> HostProvider:
    """The provider of the env servers ``options`` name (not started yet): local child
    processes for ``env_hosts`` (stepping ``inline_envs`` on their event loops), else the
    servers at ``env_urls``, opened with ``api_key`` or the ``AGENTGPT_API_KEY``
    environment variable."""
    api_key = options.api_key if options.api_key is not None else os.environ.get(API_KEY_ENV)
    if options.listen is not None:
        from agentgpt.hosts.listen import ListeningHosts

        host, port = parse_listen(options.listen)
        return ListeningHosts(
            options.env_hosts or 1,
            host,
            port,
            api_key=api_key or None,
            wait_timeout=max(options.fleet_timeout, 300.0),
        )
    if options.env_hosts_dns:
        from agentgpt.hosts.dns import DnsHosts, parse_dns_target

        name, port = parse_dns_target(options.env_hosts_dns)
        return DnsHosts(name, port, api_key=api_key or None, count=options.env_hosts or None)
    if options.env_hosts:
        from agentgpt.hosts.local import LocalEnvHosts

        # Supervised: a child that dies comes back on its port, and the fleet finds it.
        return LocalEnvHosts(
            options.env_hosts,
            register=dict(register or {}),
            log_dir=log_dir,
            supervise=True,
            inline_envs=inline_envs,
        )
    return RunningHosts(options.env_urls, api_key or None)


@contextlib.contextmanager
def open_fleet(
    env_id: str,
    options: FleetOptions,
    *,
    num_envs: int,
    seed: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    register: Mapping[str, str] | None = None,
    log_dir: str | Path | None = None,
) -> Iterator[Any]:
    """Yield a :class:`~agentgpt.remote.fleet.Fleet` of ``env_id`` envs (``num_envs`` in
    all unless ``options.envs_per_host`` says otherwise); close it, and any env servers
    started for it, on exit. ``register`` names the extra envs local hosts serve
    (``NAME -> "module:factory"``); ``log_dir`` keeps local hosts' server logs."""
    from agentgpt.remote.fleet import Fleet

    with contextlib.ExitStack() as stack:
        # Local hosts serve this run only: its env steps on their event loops, and one
        # that proves slow goes back to a worker thread by itself (EnvServer.inline_envs).
        hosts = stack.enter_context(
            host_provider(options, register=register, log_dir=log_dir, inline_envs=[env_id])
        )
        urls, api_key = hosts.urls, hosts.api_key
        if options.env_hosts and not options.env_hosts_dns and options.listen is None:
            log.info("started %d local env servers: %s", len(urls), ", ".join(urls))
        fleet = Fleet.from_urls(
            urls,
            env_id,
            locators=getattr(hosts, "locators", None),
            connectors=getattr(hosts, "connectors", None),
            envs_per_host=_per_host(options, num_envs, len(urls)),
            api_key=api_key,
            seed=seed,
            env_kwargs=dict(env_kwargs or {}),
            step_timeout=options.step_timeout,
            fleet_timeout=options.fleet_timeout,
        )
        stack.callback(fleet.close)
        yield fleet


def host_report(statuses: Sequence[Any]) -> list[str]:
    """One line per env host of a finished run, for its summary: how often and how long
    it was down, and whether it came back (a host that never did is named as such).
    ``statuses`` are :attr:`Fleet.hosts <agentgpt.remote.fleet.Fleet.hosts>` snapshots."""
    lines = []
    for status in statuses:
        if not status.times_down:
            lines.append(f"env host {status.url}: up throughout")
            continue
        times = "once" if status.times_down == 1 else f"{status.times_down} times"
        outage = f"down {times}, {status.downtime:.1f} s in all"
        if status.up:
            lines.append(f"env host {status.url}: {outage}; came back")
        else:
            lines.append(
                f"env host {status.url}: {outage}; never came back (last: {status.reason})"
            )
    return lines
