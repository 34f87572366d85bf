"""Clients for environments hosted by an AgentGPT env server.

Each client is the matching local interface, backed by HTTP: :class:`RemoteEnv` is a
``gymnasium.Env``, :class:`RemoteVectorEnv` a ``gymnasium.vector.VectorEnv`` and
:class:`RemoteParallelEnv` a PettingZoo ``ParallelEnv``. They speak the protocol in
``docs/protocol.md`` over one keep-alive connection, in MessagePack (default) or JSON, and
raise :class:`RemoteEnvError` for anything the server or the network refuses.
"""

from __future__ import annotations

from agentgpt.remote.env import RemoteEnv
from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.parallel import RemoteParallelEnv
from agentgpt.remote.transport import Transport
from agentgpt.remote.vector import RemoteVectorEnv

__all__ = ["RemoteEnv", "RemoteEnvError", "RemoteParallelEnv", "RemoteVectorEnv", "Transport"]
