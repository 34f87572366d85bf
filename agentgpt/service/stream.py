"""A service's routes over one WebSocket: the streaming session.

Every HTTP request pays for a request head, its parsing, a response head and a write of
each; a client that steps an env thousands of times a second spends most of its time
there. The streaming session carries the same requests and answers as frames on one
long-lived WebSocket (``GET /stream``, upgraded), with the same key checked once, at the
upgrade, and the same handlers behind it, so nothing about an env's behaviour depends on
how its requests travel.

Frames (``docs/protocol.md``, "Streaming session"): a request is a map
``{"id": n, "path": "/step", "body": {...}}`` (``"method": "GET"`` for a GET route, whose
``body`` is then its query parameters); its answer is ``{"id": n, "status": 200, "body":
{...}}`` or ``{"id": n, "status": 4xx|5xx, "error": {"type", "message"}}`` with the HTTP
route's status and error vocabulary. Binary frames carry MessagePack, text frames JSON;
an answer comes in the kind of frame its request came in. Requests run concurrently, so
answers may come back in any order: the client matches them by ``id``. At most
``max_in_flight`` requests of one connection run at once; the connection is not read
further until one finishes, so a client that sends without reading its answers is held
back by TCP instead of growing the server's memory. A frame that is not a request map
gets an error answer with ``id`` null (``bad_request``, or ``payload_too_large`` over
the body limit) and the connection is closed: after garbage, no
later frame of that stream can be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentgpt import wire
from agentgpt.core.busy_poll import SERVER_LIMIT_S, BusyPoll
from agentgpt.protocol.keys import AUTHORIZATION_HEADER
from agentgpt.service import direct_frames, errors
from agentgpt.service.keys import ApiKeys

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "Channel",
    "deny_upgrade",
    "serve_frames",
    "stream_endpoint",
    "stream_handlers",
]

#: Requests of one connection that may run at once.
DEFAULT_MAX_IN_FLIGHT = 256

#: WebSocket close codes (RFC 6455): the peer broke the protocol's rules / a frame too big
#: / the server is going away.
_CLOSE_POLICY = 1008
_CLOSE_TOO_BIG = 1009
_CLOSE_PROTOCOL = 1002

_METHODS = ("POST", "GET")


class _BadFrame(Exception):
    """A frame that is not a request of this protocol (``error_type`` says how)."""

    def __init__(self, message: str, error_type: str = "bad_request") -> None:
        super().__init__(message)
        self.error_type = error_type


def stream_endpoint(
    *,
    post: Mapping[str, Callable[[str, dict[str, Any]], Any]],
    get: Mapping[str, Callable[[str, dict[str, Any]], Any]],
    keys: ApiKeys,
    max_frame_bytes: int,
    debug: bool,
    logger: logging.Logger,
    unencodable: Callable[[Exception], errors.ApiError] = errors.internal_error,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    public: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
    busy_poll_s: float = SERVER_LIMIT_S,
) -> Callable[[WebSocket], Any]:
    """The WebSocket endpoint serving ``post`` and ``get`` handlers (those of the service's
    HTTP routes), and the ``public`` GET routes such as ``/health``, as a streaming
    session; ``max_frame_bytes`` is the body limit. ``busy_poll_s``: the longest a
    connection whose requests follow each other closely is polled for the next one
    (:mod:`agentgpt.core.busy_poll`; direct frames only, ``0``: never)."""
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be positive")
    if busy_poll_s < 0:
        raise ValueError("busy_poll_s must be 0 or more")
    handlers = stream_handlers(post, get, public)
    settings: dict[str, Any] = {
        "max_frame_bytes": max_frame_bytes,
        "debug": debug,
        "logger": logger,
        "unencodable": unencodable,
        "max_in_flight": max_in_flight,
    }

    async def endpoint(websocket: WebSocket) -> None:
        try:
            owner = keys.owner_for(websocket.headers.get(AUTHORIZATION_HEADER))
        except errors.ApiError as error:
            await deny_upgrade(websocket, error)
            return
        await websocket.accept()
        offer = websocket.scope.get("extensions", {}).get(direct_frames.EXTENSION)
        if offer is not None:
            await _serve_direct(
                websocket,
                offer["take_frames"],
                owner,
                handlers,
                busy_poll_s=busy_poll_s,
                **settings,
            )
        else:
            await serve_frames(_StarletteChannel(websocket), owner, handlers, **settings)

    return endpoint


def stream_handlers(
    post: Mapping[str, Callable[[str, dict[str, Any]], Any]],
    get: Mapping[str, Callable[[str, dict[str, Any]], Any]],
    public: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """A service's handlers by method and path, as :func:`serve_frames` dispatches them."""
    handlers = {"POST": dict(post), "GET": dict(get)}
    for path, answer in (public or {}).items():
        handlers["GET"].setdefault(path, _public_handler(answer))
    return handlers


class Channel(Protocol):
    """A message connection frames travel on: a WebSocket, whichever side opened it."""

    async def receive(self) -> tuple[bytes | str, bool] | None:
        """The next message and whether it is binary; ``None`` once the peer is gone."""

    async def send(self, data: bytes | str, binary: bool) -> None:
        """Send one message (a failure because the peer is gone is not an error)."""

    async def close(self, code: int) -> None:
        """Close the connection with ``code``."""


class _StarletteChannel:
    """The server side of an accepted Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> tuple[bytes | str, bool] | None:
        try:
            message = await self.websocket.receive()
        except WebSocketDisconnect:
            return None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("bytes") is not None:
            return message["bytes"], True
        return message.get("text") or "", False

    async def send(self, data: bytes | str, binary: bool) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            if binary:
                await self.websocket.send_bytes(data)  # type: ignore[arg-type]
            else:
                await self.websocket.send_text(data)  # type: ignore[arg-type]

    async def close(self, code: int) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.close(code=code)


async def serve_frames(
    channel: Channel,
    owner: str,
    handlers: dict[str, dict[str, Any]],
    *,
    max_frame_bytes: int,
    debug: bool,
    logger: logging.Logger,
    unencodable: Callable[[Exception], errors.ApiError] = errors.internal_error,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Answer the requests that arrive on ``channel`` as ``owner`` until it closes: the
    streaming session on any WebSocket, accepted here or dialled out (``handlers`` from
    :func:`stream_handlers`)."""
    session = _Session(channel, owner, handlers, max_frame_bytes, debug, logger, unencodable)
    await session.run(max_in_flight)


def _public_handler(answer: Callable[[], dict[str, Any]]) -> Any:
    async def handler(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        return answer()

    return handler


async def deny_upgrade(websocket: WebSocket, error: errors.ApiError) -> None:
    """Refuse the upgrade with the error's own HTTP answer (a 401 for a wrong key), so
    that a client can tell it from a server with no stream (Starlette's bare 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = wire.encode(errors.error_body(error), wire.JSON_MEDIA_TYPE)
        response = Response(
            body,
            status_code=error.status,
            headers=error.headers,
            media_type=wire.JSON_MEDIA_TYPE,
        )
        await websocket.send_denial_response(response)
    else:  # a server without the extension: the client sees HTTP 403
        await websocket.close(code=_CLOSE_POLICY)


class _Frames:
    """What both ways of serving a connection share: reading a request frame, running
    its handler's outcome into an answer frame, and refusing garbage."""

    def __init__(
        self,
        owner: str,
        handlers: dict[str, dict[str, Any]],
        max_frame_bytes: int,
        debug: bool,
        logger: logging.Logger,
        unencodable: Callable[[Exception], errors.ApiError],
    ) -> None:
        self.owner = owner
        self.handlers = handlers
        self.max_frame_bytes = max_frame_bytes
        self.debug = debug
        self.logger = logger
        self.unencodable = unencodable

    def _parse(self, data: Any, binary: bool) -> tuple[Any, str, str, dict[str, Any]]:
        if data is None:
            raise _BadFrame("an empty frame")
        if len(data) > self.max_frame_bytes:
            raise _BadFrame(
                f"a frame of {len(data)} bytes exceeds the limit of {self.max_frame_bytes}",
                "payload_too_large",
            )
        media_type = wire.MSGPACK_MEDIA_TYPE if binary else wire.JSON_MEDIA_TYPE
        try:
            frame = wire.decode(data if binary else data.encode("utf-8"), media_type)
        except wire.WireError as exc:
            raise _BadFrame(f"undecodable frame ({exc})") from None
        if not isinstance(frame, dict):
            raise _BadFrame("a frame must be a map")
        request_id = frame.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            raise _BadFrame("a request needs an integer or string 'id'")
        path = frame.get("path")
        method = frame.get("method", "POST")
        body = frame.get("body", {})
        if not isinstance(path, str) or method not in _METHODS or not isinstance(body, dict):
            raise _BadFrame("a request is {'id', 'path': str, 'method': 'POST'|'GET', 'body': map}")
        return request_id, method, path, body

    def _handler(self, method: str, path: str) -> Any:
        handler = self.handlers[method].get(path)
        if handler is None:
            raise errors.not_found(f"no {method} route {path!r}")
        return handler

    def _result_frame(self, request_id: Any, result: Any, binary: bool) -> Any:
        try:
            return self._encode({"id": request_id, "status": 200, "body": result}, binary)
        except Exception as exc:
            return self._failure_frame(request_id, self.unencodable(exc), binary)

    def _failure_frame(self, request_id: Any, exc: Exception, binary: bool) -> Any:
        error = exc if isinstance(exc, errors.ApiError) else errors.internal_error(exc)
        if error.status >= 500:
            self.logger.error("%s: %s", error.error_type, error.message)
        answer = errors.error_body(error, self.debug)
        answer["id"] = request_id
        answer["status"] = error.status
        return self._encode(answer, binary)

    @staticmethod
    def _encode(answer: dict[str, Any], binary: bool) -> Any:
        if binary:
            return wire.encode(answer, wire.MSGPACK_MEDIA_TYPE)
        return wire.encode(answer, wire.JSON_MEDIA_TYPE).decode("utf-8")

    def _refusal(self, problem: _BadFrame, binary: bool) -> tuple[Any, int]:
        """The answer to a frame that is not a request, and the close code that follows."""
        if problem.error_type == "payload_too_large":
            error = errors.api_error(problem.error_type, str(problem))
            code = _CLOSE_TOO_BIG
        else:
            error = errors.api_error(
                problem.error_type, f"not a request of the streaming session: {problem}"
            )
            code = _CLOSE_PROTOCOL
        answer = errors.error_body(error)
        answer["id"] = None
        answer["status"] = error.status
        return self._encode(answer, binary), code


class _Session(_Frames):
    """One accepted connection read through a :class:`Channel`: reads frames, runs each
    request as a task, writes answers."""

    def __init__(self, channel: Channel, *args: Any) -> None:
        super().__init__(*args)
        self.channel = channel
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, max_in_flight: int) -> None:
        slots = asyncio.Semaphore(max_in_flight)
        try:
            while True:
                await slots.acquire()  # backpressure: read no further while full
                message = await self.channel.receive()
                if message is None:
                    return
                data, binary = message
                try:
                    request = self._parse(data, binary)
                except _BadFrame as exc:
                    frame, code = self._refusal(exc, binary)
                    await self._send(frame, binary)
                    await self.channel.close(code)
                    return
                task = asyncio.create_task(self._answer(request, binary, slots))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            await _cancel_all(self.tasks)

    async def _answer(
        self, request: tuple[Any, str, str, dict[str, Any]], binary: bool, slots: Any
    ) -> None:
        request_id, method, path, body = request
        try:
            try:
                result = await self._handler(method, path)(self.owner, body)
            except Exception as exc:
                frame = self._failure_frame(request_id, exc, binary)
            else:
                frame = self._result_frame(request_id, result, binary)
            await self._send(frame, binary)
        finally:
            slots.release()

    async def _send(self, frame: Any, binary: bool) -> None:
        async with self.send_lock:
            await self.channel.send(frame, binary)


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def _serve_direct(
    websocket: WebSocket,
    take_frames: Callable[[Callable[[Any], Any]], Any],
    owner: str,
    handlers: dict[str, dict[str, Any]],
    *,
    max_frame_bytes: int,
    debug: bool,
    logger: logging.Logger,
    unencodable: Callable[[Exception], errors.ApiError],
    max_in_flight: int,
    busy_poll_s: float,
) -> None:
    """Serve an accepted connection whose server hands its frames over directly
    (:mod:`agentgpt.service.direct_frames`); returns when it ends."""
    session = take_frames(
        lambda link: _DirectSession(
            link,
            max_in_flight,
            busy_poll_s,
            owner,
            handlers,
            max_frame_bytes,
            debug,
            logger,
            unencodable,
        )
    )
    try:
        while True:  # frames no longer come this way: only the connection's end does
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        session.closed = True
        await _cancel_all(session.tasks)


class _DirectSession(_Frames):
    """One accepted connection whose frames arrive as they are read.

    A request's handler starts at once, inside the read; one that finishes without
    waiting (an inline env's step) is answered right there, with no task, queue or
    lock. One that has to wait (a worker thread, a lock held by an earlier request)
    finishes in a task. While ``max_in_flight`` of those run, or while answers the socket
    could not take yet fill its buffer (a client that does not read), no request starts:
    frames already read (the rest of one read) wait unstarted, in order, and reading
    stops until they can start.
    """

    def __init__(
        self, link: direct_frames.FrameLink, max_in_flight: int, busy_poll_s: float, *args: Any
    ) -> None:
        super().__init__(*args)
        self.link = link
        self.max_in_flight = max_in_flight
        self.busy_poll = BusyPoll(busy_poll_s)
        self.tasks: set[asyncio.Task[None]] = set()
        self.waiting: deque[tuple[bytes | str, bool]] = deque()
        self.closed = False

    def frame(self, data: bytes | str, binary: bool) -> None:
        if self.closed:
            return
        if self.waiting or not self._can_start():
            self.waiting.append((data, binary))
            self.link.hold_reading(True)
            return
        self._start(data, binary)

    def resume(self) -> None:
        """Start the frames that wait, as far as the limits allow; read on once none do."""
        while self.waiting and not self.closed and self._can_start():
            self._start(*self.waiting.popleft())
        if not self.closed:
            self.link.hold_reading(bool(self.waiting) or len(self.tasks) >= self.max_in_flight)

    def idle_poll(self) -> BusyPoll | None:
        if self.closed or self.tasks or self.waiting or self.busy_poll.limit_s <= 0:
            return None  # (with no limit there is nothing to poll for, nor to learn)
        return self.busy_poll

    def _can_start(self) -> bool:
        return len(self.tasks) < self.max_in_flight and self.link.takes_answers

    def _start(self, data: bytes | str, binary: bool) -> None:
        try:
            request_id, method, path, body = self._parse(data, binary)
        except _BadFrame as exc:
            frame, code = self._refusal(exc, binary)
            self.link.write_frame(frame, binary)
            self.link.close_frames(code)
            self.closed = True
            return
        try:
            running = self._handler(method, path)(self.owner, body)
            waiting_on = running.send(None)
        except StopIteration as done:
            self.link.write_frame(self._result_frame(request_id, done.value, binary), binary)
            return
        except Exception as exc:
            self.link.write_frame(self._failure_frame(request_id, exc, binary), binary)
            return
        task = asyncio.get_running_loop().create_task(
            self._finish(request_id, running, waiting_on, binary)
        )
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        if len(self.tasks) >= self.max_in_flight:
            self.link.hold_reading(True)

    async def _finish(self, request_id: Any, running: Any, waiting_on: Any, binary: bool) -> None:
        try:
            result = await _resume(running, waiting_on)
        except Exception as exc:
            frame = self._failure_frame(request_id, exc, binary)
        else:
            frame = self._result_frame(request_id, result, binary)
        if not self.closed:
            self.link.write_frame(frame, binary)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.resume()
        self.link.linger()


@types.coroutine
def _resume(running: Any, waiting_on: Any) -> Any:
    """Run on, inside a task, a coroutine that was started by hand and is now waiting on
    ``waiting_on`` (what its first step yielded): what an eager task start does."""
    try:
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # a cancellation reaches the coroutine's await
                waiting_on = running.throw(exc)
            else:
                waiting_on = running.send(sent)
    except StopIteration as done:
        return done.value
