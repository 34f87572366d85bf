"""Where env servers run, behind one interface.

A :class:`~agentgpt.hosts.provider.HostProvider` gives the URLs of env servers, the key
that opens them, and ``close()``, which undoes whatever starting them did.
:class:`~agentgpt.hosts.local.LocalEnvHosts` starts N ``agentgpt env-server`` child
processes on this machine (``agentgpt train ENV --env-hosts N``);
:class:`~agentgpt.hosts.provider.RunningHosts` stands for servers that already run
(``--env-url``). :func:`~agentgpt.hosts.fleet.open_fleet` turns either into a
:class:`~agentgpt.remote.fleet.Fleet` the trainer collects from.
"""

from __future__ import annotations

from agentgpt.hosts.local import LocalEnvHosts
from agentgpt.hosts.provider import HostProvider, RunningHosts

__all__ = ["HostProvider", "LocalEnvHosts", "RunningHosts"]
