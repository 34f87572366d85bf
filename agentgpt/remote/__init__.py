"""Clients for environments hosted by an AgentGPT env server.

Each client is the matching local interface, backed by the env server protocol
(``docs/protocol.md``): :class:`RemoteEnv` is a ``gymnasium.Env``, :class:`RemoteVectorEnv`
a ``gymnasium.vector.VectorEnv`` and :class:`RemoteParallelEnv` a PettingZoo
``ParallelEnv``. They talk to their server through a transport (:class:`BaseTransport`);
the default, :class:`Transport`, keeps one keep-alive HTTP/1.1 connection and speaks
MessagePack (default) or JSON. Anything the server or the network refuses raises a
:class:`RemoteEnvError`, of the subclass that says what to do about it
(``agentgpt.remote.errors``). :class:`Fleet` drives the envs of many servers at once,
asynchronously and tolerating faults (``agentgpt.remote.fleet``).
"""

from __future__ import annotations

from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.env import RemoteEnv
from agentgpt.remote.errors import (
    AuthError,
    BadRequestError,
    ClientClosedError,
    EnvError,
    EnvNotFoundError,
    NoAnswerError,
    NotFoundError,
    ProtocolError,
    RemoteEnvError,
    RemoteTimeout,
    UnavailableError,
)
from agentgpt.remote.fleet import Fleet, FleetBatch, FleetDownError
from agentgpt.remote.parallel import RemoteParallelEnv
from agentgpt.remote.transport import HttpTransport, Transport
from agentgpt.remote.vector import RemoteVectorEnv

__all__ = [
    "AuthError",
    "BadRequestError",
    "BaseTransport",
    "ClientClosedError",
    "EnvError",
    "EnvNotFoundError",
    "Fleet",
    "FleetBatch",
    "FleetDownError",
    "HttpTransport",
    "NoAnswerError",
    "NotFoundError",
    "ProtocolError",
    "RemoteEnv",
    "RemoteEnvError",
    "RemoteParallelEnv",
    "RemoteTimeout",
    "RemoteVectorEnv",
    "Transport",
    "UnavailableError",
]
