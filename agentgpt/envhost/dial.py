"""Serving a trainer that cannot reach this machine: the env host dials out.

Simulators often sit behind a firewall that lets connections out but none in. With
``agentgpt env-server --connect ws://trainer:PORT``, the env host opens one WebSocket to
the trainer (which listens with ``agentgpt train ... --listen PORT``) and serves the
streaming session over it, the other way round: the trainer sends request frames, this
host answers them with the same handlers, keys and limits as its own routes
(:func:`agentgpt.service.stream.serve_frames`). No inbound port or tunnel is needed here.

The host introduces itself with a name (``--name``, the machine's by default); the
trainer keeps that name's place in its fleet, so a host that drops and dials again,
after a network blip or a restart, takes its place back. A dropped connection is dialled
again with backoff until the process is stopped. The connection's key is the trainer's
(its ``Authorization`` header at the upgrade); requests over it act as that key's owner
on this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from agentgpt.protocol import routes
from agentgpt.protocol.dialing import HOST_NAME_HEADER, check_host_name
from agentgpt.protocol.keys import AUTHORIZATION_HEADER
from agentgpt.service.stream import serve_frames, stream_handlers

__all__ = ["default_host_name", "dial_out"]

logger = logging.getLogger("agentgpt.envhost")


def default_host_name() -> str:
    """This machine's name, made fit to name a host."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-.") or "envhost"
    return name[:63]


def _dial_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"--connect takes ws://host:port or wss://host:port, got {url!r}")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{routes.HOSTS_CONNECT}"


class _ClientChannel:
    """The client side of a ``websockets`` connection, as a frame channel."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def receive(self) -> tuple[bytes | str, bool] | None:
        from websockets.exceptions import ConnectionClosed

        try:
            message = await self.connection.recv()
        except ConnectionClosed:
            return None
        return message, isinstance(message, bytes)

    async def send(self, data: bytes | str, binary: bool) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(data)

    async def close(self, code: int) -> None:
        await self.connection.close(code)


async def dial_out(
    server: Any,
    url: str,
    api_key: str | None,
    name: str,
    *,
    backoff: tuple[float, float] = (0.5, 30.0),
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``server`` (an :class:`~agentgpt.envhost.EnvServer`) to the trainer at ``url``
    over connections this host opens, until ``stop`` is set (or forever).

    ``api_key``: the trainer's key (also one of ``server``'s, if it has keys: requests
    act as its owner). Each dropped connection is dialled again after ``backoff[0]``
    seconds, doubling up to ``backoff[1]`` while dialling fails.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    dial_url = _dial_url(url)
    check_host_name(name)
    authorization = f"Bearer {api_key}" if api_key else None
    owner = server.keys.owner_for(authorization)
    handlers = stream_handlers(server.post_handlers, server.get_handlers, server.public_handlers)
    headers = {HOST_NAME_HEADER: name}
    if authorization:
        headers[AUTHORIZATION_HEADER] = authorization
    stop = stop or asyncio.Event()
    delay = backoff[0]
    async with server.lifespan_context():
        while not stop.is_set():
            try:
                async with connect(
                    dial_url,
                    additional_headers=headers,
                    compression=None,
                    max_size=server.max_body_bytes,
                    proxy=None,
                ) as connection:
                    logger.info("connected to the trainer at %s as %r", url, name)
                    delay = backoff[0]
                    serving = asyncio.ensure_future(
                        serve_frames(
                            _ClientChannel(connection),
                            owner,
                            handlers,
                            max_frame_bytes=server.max_body_bytes,
                            debug=server.debug,
                            logger=logger,
                        )
                    )
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    if not serving.done():
                        serving.cancel()
                        await asyncio.gather(serving, return_exceptions=True)
                logger.warning("the connection to the trainer at %s ended", url)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    logger.error(
                        "the trainer at %s refused this host (HTTP %d): check the API key",
                        url,
                        status,
                    )
                else:
                    logger.warning("the trainer at %s answered HTTP %d", url, status)
            except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
                logger.warning("cannot reach the trainer at %s (%s)", url, exc)
            if stop.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2.0, backoff[1])
