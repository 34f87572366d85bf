"""The lifetime of one server-side env: make it, remember its key, free it exactly once."""

from __future__ import annotations

from typing import Any

from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.transport import Encoding, Transport

__all__ = ["RemoteSession", "make_request"]


def make_request(
    env_name: str,
    *,
    seed: int | None,
    env_kwargs: dict[str, Any] | None,
    render_mode: str | None,
    autoreset_mode: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of ``/make`` (``/make_vec`` adds its fields through ``extra``)."""
    return {
        "env_name": env_name,
        "seed": seed,
        "kwargs": env_kwargs or {},
        "render_mode": render_mode,
        "autoreset_mode": autoreset_mode,
        **extra,
    }


class RemoteSession:
    """A made env on a server, shared plumbing of every remote client.

    Holds the transport, the ``env_key`` and the full ``/make`` (or ``/make_vec``) answer.
    ``close()`` frees the server's env once and drops the connection; an env the server has
    already forgotten (closed, idle-expired, server restarted) or a server that is gone
    leaves nothing to free, so neither is an error there.
    """

    def __init__(self, transport: Transport, made: dict[str, Any]) -> None:
        self.transport = transport
        self.made = made
        self.env_key: str = made["env_key"]
        self.incarnation: str | None = made.get("incarnation")
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
    ) -> RemoteSession:
        """Open a connection and make an env with ``body`` on ``route``."""
        transport = Transport(
            url, api_key, encoding=encoding, timeout=timeout, connect_timeout=connect_timeout
        )
        try:
            made = transport.post(route, body)
            return cls(transport, made)
        except BaseException:
            transport.close()
            raise

    def close(self) -> None:
        """Free the server's env and the connection. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.transport.post("/close", {"env_key": self.env_key})
        except RemoteEnvError as exc:
            if exc.status not in (None, 404):
                raise
        finally:
            self.transport.close()
