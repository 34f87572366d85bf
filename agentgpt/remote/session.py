"""The lifetime of one server-side env: make it, remember its key, free it exactly once."""

from __future__ import annotations

from typing import Any

from agentgpt.protocol import routes
from agentgpt.protocol.answers import read_env_key
from agentgpt.protocol.fields import INCARNATION
from agentgpt.protocol.requests import close_request
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.connect import TransportKind, open_transport
from agentgpt.remote.errors import ClientClosedError, NoAnswerError, NotFoundError
from agentgpt.remote.transport import Encoding

__all__ = ["RemoteSession"]


class RemoteSession:
    """A made env on a server, shared plumbing of every remote client.

    Holds the transport, the ``env_key`` and the full ``/make`` (or ``/make_vec``) answer.
    ``close()`` frees the server's env once and closes the transport; an env the server
    has already forgotten (closed, idle-expired, server restarted), a server that is gone
    or a transport already closed leaves nothing to free, so none is an error there.
    """

    def __init__(self, transport: BaseTransport, made: dict[str, Any]) -> None:
        self.transport = transport
        self.made = made
        self.env_key: str = read_env_key(made)
        self.incarnation: str | None = made.get(INCARNATION)
        self.closed = False

    @classmethod
    def make(
        cls,
        route: str,
        url: str,
        api_key: str | None,
        body: dict[str, Any],
        *,
        encoding: Encoding,
        timeout: float | None,
        connect_timeout: float | None,
        transport: BaseTransport | TransportKind | None = None,
    ) -> RemoteSession:
        """Make an env with ``body`` on ``route``.

        The request goes over a new connection to ``url`` of the kind ``transport`` names
        (``"auto"``, ``"http"``, ``"stream"``; ``None``: the default, see
        :mod:`agentgpt.remote.connect`), or over ``transport`` itself when it is one
        (``url``, ``api_key``, ``encoding`` and the timeouts are then the transport's own).
        Either way the session owns the transport from here on, and closes it if the make
        fails.
        """
        if not isinstance(transport, BaseTransport):
            transport = open_transport(
                url,
                api_key,
                kind=transport,
                encoding=encoding,
                timeout=timeout,
                connect_timeout=connect_timeout,
            )
        try:
            made = transport.post(route, body)
            return cls(transport, made)
        except BaseException:
            transport.close()
            raise

    def close(self) -> None:
        """Free the server's env and close the transport. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.transport.post(routes.CLOSE, close_request(self.env_key))
        except (NoAnswerError, NotFoundError, ClientClosedError):
            pass
        finally:
            self.transport.close()
