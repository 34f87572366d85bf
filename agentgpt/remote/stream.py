"""The streaming transport: protocol requests as frames on one WebSocket.

An env server offers its routes as a streaming session at ``/stream``
(:mod:`agentgpt.service.stream`, ``docs/protocol.md``): the key is checked once, at the
upgrade, and each request then costs one small frame each way instead of an HTTP request
and response with their heads. The WebSocket protocol itself is the ``websockets``
library's sans-I/O implementation; this module only moves its bytes over the same kind of
socket :class:`~agentgpt.remote.transport.HttpTransport` uses (TCP_NODELAY, TLS, proxies
from the environment), on the caller's thread: no reader thread, no hop per answer.

Requests carry ids, so several may be in flight on one connection and their answers may
come back in any order: :meth:`StreamTransport.submit` sends one without waiting, and
:meth:`StreamTransport.answer` waits for the answer to a given id (answers to other ids
that arrive first are kept). :meth:`~StreamTransport.post` and
:meth:`~StreamTransport.get` are the two together, the interface every client uses.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidState, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from agentgpt.core.busy_poll import BusyPoll, client_limit_s
from agentgpt.protocol import routes
from agentgpt.protocol.frames import request_frame
from agentgpt.remote.base_transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    BaseTransport,
    Encoding,
)
from agentgpt.remote.errors import RemoteEnvError, remote_error
from agentgpt.remote.transport import Destination, check_url
from agentgpt.wire import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, WireError, decode, encode
from agentgpt.wire.wsframes import FrameReader, masked_frame

__all__ = ["StreamRefused", "StreamTransport", "read_answer"]

_RECV_BYTES = 1 << 16
#: After this many idle seconds a request first takes in what the server sent meanwhile.
_IDLE_CHECK = 1.0
#: Largest answer frame accepted (the server's answers are bounded by what envs return).
_MAX_FRAME = 256 * 1024 * 1024


class StreamRefused(RemoteEnvError):
    """The server (or a proxy in front of it) did not upgrade to the streaming session:
    an older server, or a proxy that does not pass WebSockets. HTTP may still work."""


class StreamTransport(BaseTransport):
    """Sends protocol requests to one env server over one WebSocket (``/stream``).

    Same arguments and errors as :class:`~agentgpt.remote.transport.HttpTransport`; the
    connection opens on the first request. A refused upgrade raises :class:`StreamRefused`
    (or :class:`~agentgpt.remote.errors.AuthenticationError` for a wrong key); a connection
    that drops fails every request in flight at once, and the next request opens a new
    one. Not thread-safe: one transport per client object.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        busy_poll_us: float | None = None,
    ) -> None:
        if encoding not in ("msgpack", "json"):
            raise ValueError(f"encoding must be 'msgpack' or 'json', got {encoding!r}")
        parts = check_url(url)
        self.base_url = url.rstrip("/")
        self.encoding = encoding
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._binary = encoding == "msgpack"
        self._media_type = MSGPACK_MEDIA_TYPE if self._binary else JSON_MEDIA_TYPE
        self._destination = Destination(parts, tls_context, tunnel=True)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self._uri = f"{scheme}://{self._destination.host}{parts.path.rstrip('/')}{routes.STREAM}"
        self._api_key = api_key
        self._sock: socket.socket | None = None
        self._protocol: ClientProtocol | None = None
        self._next_id = 0
        #: Connections opened so far; a request is answered only on the one it went out on.
        self._generation = 0
        #: Requests sent and not answered yet: id -> the connection it went out on.
        self._waiting: dict[int, int] = {}
        self._answers: dict[int, dict[str, Any]] = {}
        self._fragments: list[bytes] = []
        #: Reads the connection's frames (:mod:`agentgpt.wire.wsframes`), where it can.
        self._frames: FrameReader | None = None
        self._last_io = 0.0
        #: Polls briefly for answers before sleeping (:mod:`agentgpt.core.busy_poll`).
        self.busy_poll = BusyPoll(client_limit_s(busy_poll_us))
        self.closed = False

    # ------------------------------------------------------------------ BaseTransport

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.answer(self.submit(path, body))

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self.answer(self.submit(path, dict(params or {}), method="GET"))

    def close(self) -> None:
        self.closed = True
        self._drop()

    # ------------------------------------------------------------------ pipelining

    def submit(self, path: str, body: dict[str, Any], method: str = "POST") -> int:
        """Send a request without waiting for its answer; returns its id for
        :meth:`answer`."""
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        request_id = self._next_id
        self._next_id += 1
        frame = request_frame(request_id, path, body, method)
        data = encode(frame, self._media_type)
        try:
            if self._sock is not None and time.monotonic() - self._last_io > _IDLE_CHECK:
                self._catch_up()
            protocol, sock = self._connection()
            frames = self._frames
            if frames is not None and frames.reading and protocol.state is State.OPEN:
                # Frames are whole and plain both ways (no extension): built here, a
                # request needs no frame object, and goes after anything queued (pongs).
                self._flush(protocol, sock)
                sock.sendall(masked_frame(self._binary, data))
            else:
                if self._binary:
                    protocol.send_binary(data)
                else:
                    protocol.send_text(data)
                self._flush(protocol, sock)
        except (OSError, TimeoutError, InvalidState) as exc:
            # InvalidState: the server began closing the connection (it is shutting down).
            raise self._lost(exc) from exc
        self._waiting[request_id] = self._generation
        return request_id

    def answer(self, request_id: int) -> dict[str, Any]:
        """Wait for the answer to request ``request_id``; return its body or raise its
        error (of the tree in :mod:`agentgpt.remote.errors`)."""
        if request_id not in self._waiting and request_id not in self._answers:
            raise ValueError(f"no request {request_id} is waiting for an answer")
        started = None
        while request_id not in self._answers:
            if (
                self._protocol is None
                or self._sock is None
                or (self._waiting[request_id] != self._generation)
            ):
                del self._waiting[request_id]
                raise remote_error(
                    None,
                    "connection_error",
                    f"the stream to {self.base_url} was lost before the answer came",
                )
            if started is None:
                started = time.perf_counter()
                self.busy_poll.spin_socket(self._sock)
            try:
                self._receive(self._protocol, self._sock)
            except TimeoutError as exc:
                self._drop()
                del self._waiting[request_id]
                raise remote_error(
                    None, "timeout", f"{self.base_url} sent no answer in time ({exc})"
                ) from exc
            except OSError as exc:
                del self._waiting[request_id]
                raise self._lost(exc) from exc
        if started is not None:
            self.busy_poll.learn(time.perf_counter() - started)
        del self._waiting[request_id]
        return read_answer(self._answers.pop(request_id))

    def connect(self) -> None:
        """Open the connection now (it otherwise opens on the first request): raises
        :class:`StreamRefused` when the server does not offer the stream."""
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        try:
            self._connection()
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from exc

    def ready(self, request_id: int) -> bool:
        """Whether :meth:`answer` would return (or raise) for ``request_id`` at once.

        Reads what has arrived without waiting, so that one thread can drive many
        transports: wait until :attr:`connection_socket` is readable (``select``), then ask. A
        connection found lost raises as :meth:`answer` does.
        """
        if request_id in self._answers:
            return True
        if request_id not in self._waiting:
            raise ValueError(f"no request {request_id} is waiting for an answer")
        protocol, sock = self._protocol, self._sock
        if protocol is None or sock is None or self._waiting[request_id] != self._generation:
            return True  # lost: answer() raises
        try:
            sock.settimeout(0.0)
            while request_id not in self._answers and self._sock is sock:
                self._receive(protocol, sock)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing more has arrived
        except OSError as exc:
            del self._waiting[request_id]
            raise self._lost(exc) from exc
        finally:
            if self._sock is sock:
                sock.settimeout(self.timeout)
        return request_id in self._answers or self._sock is not sock

    @property
    def connection_socket(self) -> socket.socket | None:
        """The connection's socket, to wait on with ``select`` (``None`` while closed)."""
        return self._sock

    @property
    def in_flight(self) -> int:
        """Requests sent whose answers have not been taken yet."""
        return len(self._waiting)

    # ------------------------------------------------------------------ internals

    def _connection(self) -> tuple[ClientProtocol, socket.socket]:
        if self._protocol is not None and self._sock is not None:
            return self._protocol, self._sock
        sock = self._destination.open(self.connect_timeout, self.timeout)
        protocol = ClientProtocol(parse_uri(self._uri), max_size=_MAX_FRAME)
        try:
            self._handshake(protocol, sock)
        except BaseException:
            sock.close()
            raise
        self._sock, self._protocol = sock, protocol
        self._generation += 1
        self._frames = None
        if FrameReader.can_start(protocol):
            self._frames = FrameReader(
                False,
                _MAX_FRAME,
                lambda payload, text: self._store(payload),
                protocol.receive_data,
                protocol,
            )
        return protocol, sock

    def _handshake(self, protocol: ClientProtocol, sock: socket.socket) -> None:
        request = protocol.connect()
        if self._api_key:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        protocol.send_request(request)
        self._flush(protocol, sock)
        while protocol.handshake_exc is None and not _handshake_done(protocol):
            data = sock.recv(_RECV_BYTES)
            if not data:
                protocol.receive_eof()
                break
            protocol.receive_data(data)
        exc = protocol.handshake_exc
        if exc is None and _handshake_done(protocol):
            self._take_events(protocol)  # frames that came with the handshake's answer
            return
        raise _refusal(self.base_url, exc)

    def _flush(self, protocol: ClientProtocol, sock: socket.socket) -> None:
        data = protocol.data_to_send()
        if data:
            sock.sendall(b"".join(data))
        self._last_io = time.monotonic()

    def _catch_up(self) -> None:
        """After a pause, take in what the server sent meanwhile without waiting: answer
        its pings (it closes a connection that stops answering them) and notice a close,
        so the next request goes out on a live connection."""
        sock, protocol = self._sock, self._protocol
        assert sock is not None and protocol is not None
        sock.setblocking(False)
        try:
            while True:
                try:
                    data = sock.recv(_RECV_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    protocol.receive_eof()
                    break
                self._take_in(protocol, data)
        except OSError:
            self._drop()
            return
        finally:
            if self._sock is not None:
                sock.settimeout(self.timeout)
        try:
            self._flush(protocol, sock)
            self._take_events(protocol)
        except OSError:
            self._drop()
            return
        if protocol.close_code is not None or protocol.state.name != "OPEN":
            self._drop()

    def _receive(self, protocol: ClientProtocol, sock: socket.socket) -> None:
        data = sock.recv(_RECV_BYTES)
        if data:
            self._take_in(protocol, data)
        else:
            protocol.receive_eof()
        self._flush(protocol, sock)  # pongs, and the answer to a close
        self._take_events(protocol)
        if not data or protocol.close_code is not None or protocol.state.name == "CLOSED":
            code = protocol.close_code
            self._drop()
            reason = "closed" if code is None else f"closed with code {code}"
            if code == 1002:
                reason += " (the server did not accept a frame)"
            raise ConnectionResetError(f"the stream was {reason}")

    def _take_in(self, protocol: ClientProtocol, data: bytes) -> None:
        """Read ``data``: whole answer frames through the frame reader, each stored at
        once, and the rest through websockets, whose events :meth:`_take_events` takes."""
        if self._frames is not None:
            self._frames.feed(data)
        else:
            protocol.receive_data(data)

    def _take_events(self, protocol: ClientProtocol) -> None:
        for event in protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._fragments.append(bytes(event.data))
                if event.fin:
                    self._store(b"".join(self._fragments))
                    self._fragments.clear()

    def _store(self, data: bytes) -> None:
        try:
            frame = decode(data, self._media_type)
        except WireError as exc:
            self._drop()
            raise remote_error(200, "bad_response", f"undecodable frame: {exc}") from exc
        if not isinstance(frame, dict):
            self._drop()
            raise remote_error(200, "bad_response", "an answer frame that is not a map")
        request_id = frame.get("id")
        if request_id is None:
            # The server refused a frame of ours and closes: nothing later is answered.
            error = frame.get("error") or {}
            self._drop()
            raise remote_error(
                int(frame.get("status", 400)),
                str(error.get("type", "bad_request")),
                str(error.get("message", "the server refused a frame")),
            )
        if request_id in self._waiting:
            self._answers[request_id] = frame

    def _lost(self, exc: BaseException) -> RemoteEnvError:
        self._drop()
        if isinstance(exc, RemoteEnvError):
            return exc
        return remote_error(
            None,
            "connection_error",
            f"cannot reach the env server at {self.base_url} ({type(exc).__name__}: {exc})",
        )

    def _drop(self) -> None:
        """Forget the connection; every request in flight on it is lost."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._protocol = None
        self._fragments.clear()
        self._frames = None


def _handshake_done(protocol: ClientProtocol) -> bool:
    return protocol.state.name == "OPEN"


def _refusal(base_url: str, exc: BaseException | None) -> RemoteEnvError:
    """The error for an upgrade that did not happen: a wrong key, or no stream there."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return remote_error(
                401, "unauthorized", f"{base_url} refused the stream: missing or wrong API key"
            )
        # A server without the stream (Starlette refuses unknown WebSocket routes with
        # 403), a proxy that does not pass WebSockets (400, 404, 426, 502, ...).
        return StreamRefused(
            status, "stream_refused", f"{base_url} offers no streaming session (HTTP {status})"
        )
    if isinstance(exc, InvalidHandshake):
        return StreamRefused(None, "stream_refused", f"{base_url}: {exc}")
    return remote_error(
        None, "connection_error", f"{base_url} closed the connection during the upgrade"
    )


def read_answer(frame: dict[str, Any]) -> dict[str, Any]:
    """The body of an answer frame of the streaming session, or its error raised as the
    exception of the tree in :mod:`agentgpt.remote.errors` its status and type call for."""
    status = frame.get("status")
    if status == 200 and isinstance(frame.get("body"), dict):
        return frame["body"]
    error = frame.get("error")
    if isinstance(status, int) and isinstance(error, dict):
        raise remote_error(status, str(error.get("type", "error")), str(error.get("message", "")))
    raise remote_error(
        status if isinstance(status, int) else 200, "bad_response", "a malformed answer"
    )
