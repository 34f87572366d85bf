"""Starting env servers for training: on this machine, as child processes.

:class:`LocalEnvHosts` backs ``agentgpt train ENV --env-hosts N`` when no server URL is
given: N ``agentgpt env-server`` processes on free loopback ports, sharing a generated API
key, that the trainer reaches over HTTP like any remote host.
"""

from __future__ import annotations

from agentgpt.hosts.local import LocalEnvHosts

__all__ = ["LocalEnvHosts"]
