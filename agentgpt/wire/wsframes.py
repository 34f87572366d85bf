"""Reading the WebSocket frames of a streaming session's hot path without a parser object.

websockets' sans-I/O protocol reads every frame through generator coroutines, a frame
object and its checks: a few microseconds per frame, paid twice per env step (the request
on the server, the answer on the client), and more while the caches are cold after an
env step. A session's frames are nearly all whole, unfragmented data frames without
extensions, so both ends read those here and hand everything else to websockets: a
control frame (ping, pong, close) goes to it whole, which keeps its state right (it
answers pings and closes); anything unusual (a fragment, reserved bits, a frame masked
the wrong way, an oversized frame, an unknown opcode) makes the reader hand the rest of
the connection over to websockets for good, which then reports the error as it always
does. Only whole frames are read here, so websockets, when it takes over, starts at a
frame boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from websockets.frames import apply_mask
from websockets.protocol import State

__all__ = [
    "BINARY",
    "HAND_OVER",
    "TEXT",
    "FrameReader",
    "frame_header",
    "masked_frame",
    "read_frame",
]

TEXT, BINARY = 0x1, 0x2
_CONTROL = (0x8, 0x9, 0xA)  # close, ping, pong
#: What :func:`read_frame` returns for a frame websockets must read from now on.
HAND_OVER = "hand over"


def read_frame(
    data: bytes, start: int, masked: bool, max_size: int
) -> tuple[int, int, bytes | None] | str | None:
    """The frame of ``data`` that begins at ``start``.

    Returns ``None`` while the frame is incomplete; :data:`HAND_OVER` for a frame this
    reader does not take; else ``(opcode, end, payload)``: a whole text or binary
    frame's unmasked payload, or ``payload=None`` for a control frame, whose bytes
    (``data[start:end]``) go to websockets. ``masked``: whether frames must be masked
    (they are from a client); ``max_size``: the largest payload taken.
    """
    available = len(data) - start
    if available < 2:
        return None
    first, second = data[start], data[start + 1]
    opcode = first & 0x0F
    if first & 0xF0 != 0x80 or bool(second & 0x80) is not masked:
        return HAND_OVER  # a fragment, reserved bits, or the wrong masking
    if opcode not in (TEXT, BINARY) and opcode not in _CONTROL:
        return HAND_OVER
    length = second & 0x7F
    head = 2
    if length == 126:
        head = 4
        if available < head:
            return None
        length = int.from_bytes(data[start + 2 : start + 4], "big")
    elif length == 127:
        head = 10
        if available < head:
            return None
        length = int.from_bytes(data[start + 2 : start + 10], "big")
    if length > max_size:
        return HAND_OVER
    if masked:
        head += 4
    end = start + head + length
    if len(data) < end:
        return None
    if opcode not in (TEXT, BINARY):
        return opcode, end, None
    payload = data[start + head : end]
    if masked:
        payload = apply_mask(payload, data[start + head - 4 : start + head])
    return opcode, end, payload


def frame_header(binary: bool, length: int, masked: bool = False) -> bytes:
    """The header of a whole data frame (RFC 6455, 5.2) of ``length`` bytes, without its
    masking key: what a server puts before each answer, and a client (``masked``) before
    the key of each request."""
    first = 0x80 | (BINARY if binary else TEXT)  # FIN, and the opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 0x10000:
        return bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    return bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")


def masked_frame(binary: bool, payload: bytes) -> bytes:
    """A whole data frame as a client sends it: masked with a fresh random key."""
    key = os.urandom(4)
    return frame_header(binary, len(payload), masked=True) + key + apply_mask(payload, key)


class FrameReader:
    """One connection's reading, from a frame boundary on: whole data frames here, the
    rest through websockets (see the module's docstring).

    ``masked`` and ``max_size`` as for :func:`read_frame`; ``message(payload, text)``
    takes each data frame's payload; ``hand_over(data)`` gives bytes to websockets (its
    ``receive_data``, or a wrapper that also takes its events); ``protocol`` is that
    websockets protocol, whose state says when a control frame began the closing.
    """

    def __init__(
        self,
        masked: bool,
        max_size: int,
        message: Callable[[bytes, bool], None],
        hand_over: Callable[[bytes], None],
        protocol: Any,
    ) -> None:
        self._masked = masked
        self._max_size = max_size
        self._message = message
        self._hand_over = hand_over
        self._protocol = protocol
        self._partial = b""
        #: False once websockets reads everything (after an unusual frame, or a close).
        self.reading = True

    @staticmethod
    def can_start(protocol: Any) -> bool:
        """Whether ``protocol`` (a websockets protocol, open) stands at a frame boundary
        with no extension in use, where a :class:`FrameReader` can take over."""
        return (
            protocol.state is State.OPEN
            and not protocol.extensions
            and protocol.current_size is None  # no message half read
            and not protocol.reader.buffer  # nor a frame
        )

    def feed(self, data: bytes) -> None:
        """Read ``data``, the next bytes of the connection."""
        if not self.reading:
            self._hand_over(data)
            return
        if self._partial:
            data, self._partial = self._partial + data, b""
        start, size = 0, len(data)
        while start < size:
            frame = read_frame(data, start, self._masked, self._max_size)
            if frame is None:
                self._partial = data[start:]
                return
            if frame is HAND_OVER:
                self.reading = False
                self._hand_over(data[start:])
                return
            opcode, end, payload = frame  # type: ignore[misc]
            if payload is None:  # ping, pong or close: websockets answers them
                self._hand_over(data[start:end])
                if self._protocol.state is not State.OPEN:  # closing: websockets reads on
                    self.reading = False
                    if end < size:
                        self._hand_over(data[end:])
                    return
            else:
                self._message(payload, opcode == TEXT)
            start = end
