"""Where env servers run, behind one interface.

A :class:`~agentgpt.hosts.provider.HostProvider` gives the URLs of env servers, the key
that opens them, and ``close()``, which undoes whatever starting them did.
:class:`~agentgpt.hosts.local.LocalEnvHosts` starts N ``agentgpt env-server`` child
processes on this machine (``agentgpt train ENV --env-hosts N``);
:class:`~agentgpt.hosts.provider.RunningHosts` stands for servers that already run
(``--env-url``); :class:`~agentgpt.hosts.dns.DnsHosts` finds them through DNS
(``--env-hosts-dns``, a Kubernetes headless Service).
:func:`~agentgpt.hosts.fleet.open_fleet` turns any of them into a
:class:`~agentgpt.remote.fleet.Fleet` the trainer collects from.

Serving envs to trainers elsewhere (docs/hosting.md):
:func:`~agentgpt.hosts.launch.launch_on_local_with_ip` and
:func:`~agentgpt.hosts.launch.launch_on_local_with_url` (through a
:class:`~agentgpt.hosts.tunnels.Tunnel`) return a
:class:`~agentgpt.hosts.launch.LaunchedEnvHosts`.
"""

from __future__ import annotations

from agentgpt.hosts.dns import DnsHosts
from agentgpt.hosts.launch import (
    LaunchedEnvHosts,
    launch_on_local_with_ip,
    launch_on_local_with_url,
)
from agentgpt.hosts.local import LocalEnvHosts
from agentgpt.hosts.provider import HostProvider, RunningHosts

__all__ = [
    "DnsHosts",
    "HostProvider",
    "LaunchedEnvHosts",
    "LocalEnvHosts",
    "RunningHosts",
    "launch_on_local_with_ip",
    "launch_on_local_with_url",
]
