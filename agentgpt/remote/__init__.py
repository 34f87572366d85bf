"""Clients for environments hosted by an AgentGPT env server.

Each client is the matching local interface, backed by HTTP: :class:`RemoteEnv` is a
``gymnasium.Env``, :class:`RemoteVectorEnv` a ``gymnasium.vector.VectorEnv`` and
:class:`RemoteParallelEnv` a PettingZoo ``ParallelEnv``. They speak the protocol in
``docs/protocol.md`` over one keep-alive connection, in MessagePack (default) or JSON, and
raise :class:`RemoteEnvError` for anything the server or the network refuses.
:class:`Fleet` drives the envs of many servers at once, asynchronously and tolerating
faults (``agentgpt.remote.fleet``).
"""

from __future__ import annotations

from agentgpt.remote.env import RemoteEnv
from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.fleet import Fleet, FleetBatch, FleetDownError
from agentgpt.remote.parallel import RemoteParallelEnv
from agentgpt.remote.transport import Transport
from agentgpt.remote.vector import RemoteVectorEnv

__all__ = [
    "Fleet",
    "FleetBatch",
    "FleetDownError",
    "RemoteEnv",
    "RemoteEnvError",
    "RemoteParallelEnv",
    "RemoteVectorEnv",
    "Transport",
]
