"""The streaming session's frames, handed from the socket straight to the session.

Through ASGI, every frame of a WebSocket travels as a message dict through an
``asyncio.Queue``, Starlette's ``WebSocket`` wrapper and a task per request, and uvicorn
pauses and resumes reading the socket around each one; for an env step that takes a few
microseconds, those layers are a large share of the server's work (about a quarter of
its CPU per step, measured in ``docs/benchmarks.md``). The upgrade itself still goes
through ASGI (routing, the browser checks, the key check, the denial answers), so only the
frames take the short way.

:func:`direct_frames_protocol` makes uvicorn's WebSocket protocol (``websockets``
sans-I/O) into a protocol with one addition: the ASGI scope of each connection carries
the extension :data:`EXTENSION`, through which the endpoint, once it has accepted the
connection, can take its frames over (``take_frames``). From then on each complete
message is given to a :class:`FrameSink` as soon as it is read, and answers are written
through its :class:`FrameLink`, each in a single write. While the socket's write buffer is
over its high-water mark (a client that does not read its answers) the link says so and
reading stops, and the sink starts no request until the buffer drains; the sink also
stops reading while it has too much in flight. Memory stays bounded either way. Servers
run by other ASGI servers simply lack the extension and keep the ASGI path
(:mod:`agentgpt.service.stream` serves both).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from agentgpt.core.busy_poll import BusyPoll
from agentgpt.wire.wsframes import FrameReader, frame_header

__all__ = ["EXTENSION", "FrameLink", "FrameSink", "direct_frames_protocol"]

#: The ASGI scope extension a connection offers its frames through.
EXTENSION = "agentgpt.direct_frames"
#: A server with more direct connections than this never polls: each poll holds its
#: event loop, which other connections' requests (of ours or not) would wait on.
MAX_POLLING_CONNECTIONS = 16


class FrameSink(Protocol):
    """Who takes a connection's frames over."""

    def frame(self, data: bytes | str, binary: bool) -> None:
        """One complete message (``str`` for a text message), as soon as it is read."""

    def resume(self) -> None:
        """The socket takes answers again (:attr:`FrameLink.takes_answers`): go on."""

    def idle_poll(self) -> BusyPoll | None:
        """The connection's polling window when every request read so far is answered
        (the next can come at once), ``None`` while some still run or wait."""


class FrameLink(Protocol):
    """What a sink can do with the connection it took over."""

    def write_frame(self, data: bytes | str, binary: bool) -> None:
        """Send one message in a single write (nothing once the connection closes)."""

    @property
    def takes_answers(self) -> bool:
        """False while answers the socket could not take yet fill its buffer (reading is
        then held too): start no more requests until :meth:`FrameSink.resume`."""

    def hold_reading(self, held: bool) -> None:
        """Stop (``True``) or restart reading requests, for the sink's own limits."""

    def close_frames(self, code: int) -> None:
        """Start the closing handshake with ``code``; no frame is taken after it."""

    def linger(self) -> None:
        """Everything read is answered: poll briefly for the next request before the
        event loop sleeps (:meth:`FrameSink.idle_poll` gives the window)."""


def direct_frames_protocol() -> type | None:
    """uvicorn's ``websockets`` sans-I/O protocol with direct frames, or ``None`` where
    this uvicorn or ``websockets`` lacks it (the default WebSocket protocol is kept)."""
    if importlib.util.find_spec("websockets") is None:
        return None
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:
        return None
    return _make_class(WebSocketsSansIOProtocol)


def _make_class(base: type) -> type:
    from websockets.exceptions import InvalidState
    from websockets.protocol import OPEN

    class DirectFramesProtocol(base):  # type: ignore[misc, valid-type]
        """uvicorn's sans-I/O WebSocket protocol whose frames an endpoint can take over."""

        #: Sockets of the connections whose frames were taken, all polled while one
        #: lingers, so that a request on any of them ends the poll.
        taken: set[int] = set()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sink: FrameSink | None = None
            self._held_by_sink = False
            self._held_by_buffer = False
            self._reading_stopped = False
            self._fd = -1
            self._lingered: tuple[BusyPoll, float] | None = None
            #: Reads the frames once they are taken (:mod:`agentgpt.wire.wsframes`).
            self._frames: FrameReader | None = None

        def data_received(self, data: bytes) -> None:
            lingered = self._lingered
            if lingered is not None:
                self._lingered = None
                lingered[0].learn(time.perf_counter() - lingered[1])
            if self._frames is not None:
                self._frames.feed(data)
            else:
                super().data_received(data)
            self.linger()

        def connection_lost(self, exc: Exception | None) -> None:
            self.taken.discard(self._fd)
            super().connection_lost(exc)

        # ------------------------------------------------ offering the extension

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if scope is not None:  # None when the handshake itself was refused
                scope["extensions"][EXTENSION] = {"take_frames": self.take_frames}

        def take_frames(self, make_sink: Callable[[FrameLink], FrameSink]) -> FrameSink:
            """Give every message from now on to the sink ``make_sink(link)`` makes (the
            link being this connection) instead of the ASGI queue; returns the sink.

            Messages already queued for the app go to the sink first, in order; the
            app's ``receive()`` then only reports the connection's end.
            """
            sink = self._sink = make_sink(self)
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                self._fd = sock.fileno()
                self.taken.add(self._fd)
            kept = []
            while not self.queue.empty():
                message = self.queue.get_nowait()
                if message["type"] == "websocket.receive":
                    if message.get("bytes") is not None:
                        sink.frame(message["bytes"], True)
                    else:
                        sink.frame(message.get("text") or "", False)
                else:
                    kept.append(message)
            for message in kept:
                self.queue.put_nowait(message)
            if FrameReader.can_start(self.conn):
                self._frames = FrameReader(
                    True,
                    self.conn.max_message_size or sys.maxsize,
                    self._message,
                    lambda data: base.data_received(self, data),
                    self.conn,
                )
            if self.read_paused:  # uvicorn pauses after each message it queues
                self.read_paused = False
                self._reading_stopped = True
                self._update_reading()
            return sink

        def send_receive_event_to_app(self) -> None:
            sink = self._sink
            if sink is None:
                super().send_receive_event_to_app()
                return
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            self.frames = []
            self._message(bytes(data), self.curr_msg_data_type == "text")

        def _message(self, data: bytes, text: bool) -> None:
            """A whole message read, for the sink."""
            sink = self._sink
            if self.close_sent or sink is None:
                return  # past our close: only the peer's close reply is awaited
            if text:
                try:
                    decoded = data.decode("utf-8")
                except UnicodeDecodeError:
                    self.close_frames(1007)  # invalid frame payload data
                    return
                sink.frame(decoded, False)
            else:
                sink.frame(data, True)

        # ------------------------------------------------ the link

        def write_frame(self, data: bytes | str, binary: bool) -> None:
            if self.close_sent or self.transport.is_closing():
                return
            payload = data.encode("utf-8") if isinstance(data, str) else data
            frames = self._frames
            if frames is not None and frames.reading and self.conn.state is OPEN:
                # Frames are whole and plain both ways (no extension): a whole unmasked
                # frame needs only its header, built here without websockets' frame object.
                self.transport.write(frame_header(binary, len(payload)) + payload)
                return
            try:
                if binary:
                    self.conn.send_binary(payload)
                else:
                    self.conn.send_text(payload)
            except InvalidState:
                return  # the peer started closing: nobody reads this answer
            self.transport.write(b"".join(self.conn.data_to_send()))

        @property
        def takes_answers(self) -> bool:
            return not self._held_by_buffer

        def hold_reading(self, held: bool) -> None:
            self._held_by_sink = held
            self._update_reading()

        def close_frames(self, code: int) -> None:
            if self.close_sent or self.transport.is_closing():
                return
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": ""})
            self.conn.send_close(code, "")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self._held_by_sink = self._held_by_buffer = False
            self._update_reading()  # the peer's close reply must still be read
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

        def linger(self) -> None:
            sink = self._sink
            if sink is None or self.close_sent or self.transport.is_closing():
                return
            busy = sink.idle_poll()
            if busy is None:
                return
            self._lingered = (busy, time.perf_counter())
            if busy.window_s > 0 and 0 < len(self.taken) <= MAX_POLLING_CONNECTIONS:
                busy.spin(tuple(self.taken))

        # ------------------------------------------------ flow control

        def pause_writing(self) -> None:
            super().pause_writing()
            self._held_by_buffer = True
            self._update_reading()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._held_by_buffer = False
            if self._sink is not None:
                self._sink.resume()
            self._update_reading()

        def _update_reading(self) -> None:
            if self._sink is None or self.transport.is_closing():
                return
            stop = self._held_by_sink or self._held_by_buffer
            if stop and not self._reading_stopped:
                self.transport.pause_reading()
            elif not stop and self._reading_stopped:
                self.transport.resume_reading()
            self._reading_stopped = stop

    return DirectFramesProtocol
