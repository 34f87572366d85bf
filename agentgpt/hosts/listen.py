"""Env hosts that dial in: the trainer listens, simulators behind firewalls connect.

``agentgpt train ENV --listen PORT`` starts :class:`ListeningHosts`: a small service on
``PORT`` whose WebSocket route (``/hosts/connect``) env hosts dial with
``agentgpt env-server --connect ws://trainer:PORT`` (:mod:`agentgpt.envhost.dial`). Each
host names itself; once the expected number of hosts has connected, their names are the
fleet's hosts, in the order they came. The fleet then drives each one's envs over its
connection, requests one way and answers the other, as it drives servers it connects to:
a host whose connection drops is down, its envs' episodes are cut, and when a host dials
in again under the same name its place is its own again (the fleet's probe finds it).

The route takes the same API keys as the env servers (the key the trainer is given);
without a key the listener stays on loopback, like any server here. The connections'
requests run on the listener's event loop thread; the fleet's worker threads wait on
them through :class:`LinkTransport`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocketDisconnect

from agentgpt import wire
from agentgpt.hosts.provider import HostProvider
from agentgpt.protocol import routes
from agentgpt.protocol.dialing import HOST_NAME_HEADER, check_host_name
from agentgpt.protocol.frames import request_frame
from agentgpt.protocol.keys import AUTHORIZATION_HEADER
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.errors import remote_error
from agentgpt.remote.fleet.arguments import DIALLED_SCHEME
from agentgpt.remote.stream import read_answer
from agentgpt.service import errors
from agentgpt.service.app import service_app
from agentgpt.service.keys import ApiKeys
from agentgpt.service.serving import check_exposure
from agentgpt.service.stream import deny_upgrade
from agentgpt.service.threaded import serve_in_thread

__all__ = ["LinkTransport", "ListeningHosts"]

log = logging.getLogger("agentgpt.fleet")

_MAX_FRAME_BYTES = 64 * 1024 * 1024
_POLL = 0.05


class _Link:
    """One dialled-in host's connection, on the listener's event loop: sends request
    frames and hands each answer to the request waiting for it."""

    def __init__(self, name: str, websocket: Any) -> None:
        self.name = name
        self.websocket = websocket
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.send_lock = asyncio.Lock()
        self.open = True

    async def request(self, path: str, body: dict[str, Any], method: str) -> dict[str, Any]:
        if not self.open:
            raise ConnectionResetError(f"env host {self.name} disconnected")
        request_id = self.next_id
        self.next_id += 1
        frame = request_frame(request_id, path, body, method)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            try:
                async with self.send_lock:
                    await self.websocket.send_bytes(wire.encode(frame, wire.MSGPACK_MEDIA_TYPE))
            except (RuntimeError, OSError, WebSocketDisconnect) as exc:
                # The host went away under the send: Starlette, uvicorn and asyncio each
                # say so with their own exception; the fleet needs one it reads as a
                # host fault.
                raise ConnectionResetError(f"env host {self.name} disconnected") from exc
            return await future
        finally:
            self.pending.pop(request_id, None)

    async def read(self) -> None:
        """Take answers until the connection ends; then fail every request in flight."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    continue
                try:
                    frame = wire.decode(data, wire.MSGPACK_MEDIA_TYPE)
                except wire.WireError:
                    continue
                future = self.pending.get(frame.get("id")) if isinstance(frame, dict) else None
                if future is not None and not future.done():
                    future.set_result(frame)
        except WebSocketDisconnect:
            return
        finally:
            self.open = False
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionResetError(f"env host {self.name} disconnected"))


class LinkTransport(BaseTransport):
    """Requests to one dialled-in host, over its current connection (thread-safe)."""

    encoding = "msgpack"

    def __init__(self, hosts: ListeningHosts, name: str, timeout: float) -> None:
        self._hosts = hosts
        self._name = name
        self._timeout = timeout
        self.base_url = f"{hosts.url_scheme}://{name}"
        self.closed = False

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(path, body, "POST")

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._call(path, dict(params or {}), "GET")

    def close(self) -> None:
        self.closed = True

    def _call(self, path: str, body: dict[str, Any], method: str) -> dict[str, Any]:
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        link, loop = self._hosts.link(self._name)
        if link is None or loop is None:
            raise remote_error(None, "connection_error", f"env host {self._name} is not connected")
        future = asyncio.run_coroutine_threadsafe(link.request(path, body, method), loop)
        try:
            frame = future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise remote_error(
                None, "timeout", f"env host {self._name} sent no answer in time"
            ) from None
        except ConnectionError as exc:
            raise remote_error(None, "connection_error", str(exc)) from None
        return read_answer(frame)


class ListeningHosts(HostProvider):
    """``count`` env hosts that dial in to ``host:port`` (``port`` 0: a free one).

    :meth:`start` returns once ``count`` hosts with different names have connected (or
    raises ``TimeoutError`` after ``wait_timeout`` seconds). ``api_key``: the key hosts
    must present (required unless ``host`` is a loopback address).
    """

    url_scheme = DIALLED_SCHEME

    def __init__(
        self,
        count: int,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        wait_timeout: float = 300.0,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        check_exposure(host, bool(api_key))
        self.count = count
        self.host = host
        self.port = port
        self.api_key = api_key
        self.wait_timeout = float(wait_timeout)
        self._keys = ApiKeys([api_key] if api_key else None)
        self._lock = threading.Lock()
        self._links: dict[str, _Link] = {}
        self._order: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack = contextlib.ExitStack()
        self.address = ""

    # ------------------------------------------------------------------ HostProvider

    @property
    def urls(self) -> list[str]:
        """``dialled://NAME`` for each host, in the order they first connected."""
        return [f"{self.url_scheme}://{name}" for name in self._order[: self.count]]

    @property
    def connectors(self) -> list[Callable[[float], BaseTransport]]:
        """One transport factory per host, for the fleet."""
        return [
            (lambda timeout, name=name: LinkTransport(self, name, timeout))
            for name in self._order[: self.count]
        ]

    def start(self) -> ListeningHosts:
        app = service_app(
            post={},
            get={},
            public={routes.HEALTH: lambda: {"status": "ok"}},
            keys=self._keys,
            max_body_bytes=_MAX_FRAME_BYTES,
            debug=False,
            lifespan=self._lifespan,
            websockets={routes.HOSTS_CONNECT: self._accept},
        )
        url = self._stack.enter_context(serve_in_thread(app, self.host, self.port))
        self.address = url.replace("http://", "ws://")
        log.info(
            "waiting for %d env host(s) to dial in: agentgpt env-server --connect %s",
            self.count,
            self.address,
        )
        deadline = time.monotonic() + self.wait_timeout
        while len(self._order) < self.count:
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(
                    f"{len(self._order)} of {self.count} env host(s) dialled in to"
                    f" {self.address} within {self.wait_timeout:g} s"
                )
            time.sleep(_POLL)
        return self

    def close(self) -> None:
        self._stack.close()

    # ------------------------------------------------------------------ links

    def link(self, name: str) -> tuple[_Link | None, asyncio.AbstractEventLoop | None]:
        """The host's open connection (``None`` while it is not connected) and its loop."""
        with self._lock:
            link = self._links.get(name)
        return (link if link is not None and link.open else None), self._loop

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> Any:
        self._loop = asyncio.get_running_loop()
        yield

    async def _accept(self, websocket: Any) -> None:
        try:
            self._keys.owner_for(websocket.headers.get(AUTHORIZATION_HEADER))
            name = check_host_name(websocket.headers.get(HOST_NAME_HEADER, ""))
        except errors.ApiError as error:
            await deny_upgrade(websocket, error)
            return
        except ValueError as exc:
            await deny_upgrade(websocket, errors.api_error("invalid_argument", str(exc)))
            return
        await websocket.accept()
        link = _Link(name, websocket)
        with self._lock:
            old = self._links.get(name)
            self._links[name] = link
            known = name in self._order
            if not known:
                self._order.append(name)
            place = self._order.index(name)
        if old is not None and old.open:
            with contextlib.suppress(Exception):
                await old.websocket.close(code=1000)
        if place >= self.count:
            log.warning("env host %r dialled in, but this run has its %d", name, self.count)
        elif known:
            log.info("env host %r dialled in again", name)
        else:
            log.info("env host %r dialled in (%d of %d)", name, place + 1, self.count)
        await link.read()
        log.warning("env host %r disconnected", name)
