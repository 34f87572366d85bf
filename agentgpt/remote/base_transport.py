"""What a remote client needs from its connection to one env server.

The clients only ever send a request on a protocol route and read the decoded answer, so
that is all a transport has to offer: :meth:`~BaseTransport.post` and
:meth:`~BaseTransport.get`, :meth:`~BaseTransport.close`, the server's ``base_url`` and
the ``encoding`` bodies travel in. The HTTP/1.1 socket transport
(:class:`agentgpt.remote.transport.Transport`) is the default; any other way of carrying
the same requests and answers (a stream, an in-process server for tests) plugs in by
implementing this interface.
"""

from __future__ import annotations

import abc
from typing import Any, Literal

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "BaseTransport", "Encoding"]

#: The body formats of the protocol: MessagePack (arrays travel as raw bytes) or JSON.
Encoding = Literal["msgpack", "json"]

#: Seconds to wait for an answer. Generous because one step of a heavy env (physics,
#: rendering, a 64-env vector) may legitimately take long; lower it for interactive use.
DEFAULT_TIMEOUT = 60.0
#: Seconds to wait for a connection: a server that is down should fail fast.
DEFAULT_CONNECT_TIMEOUT = 10.0


class BaseTransport(abc.ABC):
    """Sends protocol requests to one env server and returns its answers.

    Requests and answers are maps of protocol values; the transport encodes them in
    :attr:`encoding`. Every failure raises an exception of the tree in
    :mod:`agentgpt.remote.errors`, of the class :func:`~agentgpt.remote.errors.remote_error`
    gives (an error answer's status and type, or the client's own type when no answer
    came back), so callers never depend on how the request travelled. Not thread-safe
    unless an implementation says so: each client owns one.
    """

    #: The server's base URL, for messages.
    base_url: str
    #: The format request and answer bodies travel in.
    encoding: Encoding
    #: Whether :meth:`close` was called.
    closed: bool

    @abc.abstractmethod
    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send ``body`` to the POST route ``path`` (``"/step"``); return the answer map."""

    @abc.abstractmethod
    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Ask the GET route ``path`` (``"/health"``) with query ``params``; return the
        answer map."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection. Idempotent; later requests raise
        :class:`~agentgpt.remote.errors.ClientClosedError`."""
