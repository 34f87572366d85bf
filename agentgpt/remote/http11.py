"""A small HTTP/1.1 response reader for the transport's hot path.

Reading a response is most of a remote step's client-side CPU when done with
``http.client`` (its header parsing goes through the ``email`` package, tens of
microseconds per response). This reader handles what a server, proxy or load balancer may
legitimately send back to our requests (``Content-Length``, chunked bodies, bodies ended by
closing the connection, interim ``1xx`` responses, ``Connection: close``, HTTP/1.0) in a
few microseconds, and nothing more: requests are written by the transport itself.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

__all__ = ["HttpResponse", "IncompleteResponse", "MalformedResponse", "ResponseReader"]

#: Larger response heads are refused: no server of ours sends one, and an endless head
#: must not grow memory without bound.
MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 256 * 1024


class MalformedResponse(ValueError):
    """The peer's bytes are not a valid HTTP/1.1 response: it is not an HTTP server."""


class IncompleteResponse(ConnectionError):
    """The peer hung up before a complete response, as a server going down does."""


class HttpResponse(NamedTuple):
    status: int
    #: Header names in lower case; repeated headers joined with ``", "``.
    headers: dict[str, str]
    body: bytes
    #: Whether the connection may carry the next request.
    keep_alive: bool


class ResponseReader:
    """Reads consecutive responses from one connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def read_response(self) -> HttpResponse:
        """Read one complete response to a ``GET`` or ``POST``."""
        while True:
            status, version, headers = self._read_head()
            if not 100 <= status < 200:
                break  # interim responses (100 Continue, 103 Early Hints) precede the real one
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise MalformedResponse(
                    f"bad Content-Length {headers['content-length']!r}"
                ) from None
            body = self._read_exact(length)
        else:
            body = self._read_to_close()
            keep_alive = False
        return HttpResponse(status, headers, body, keep_alive)

    def _fill(self) -> None:
        chunk = self._sock.recv(_RECV_BYTES)
        if not chunk:
            raise IncompleteResponse("the server closed the connection before a complete response")
        self._buffer += chunk

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise MalformedResponse(f"response head longer than {MAX_HEAD_BYTES} bytes")
            self._fill()
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise MalformedResponse(f"malformed status line {lines[0][:100]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise MalformedResponse(f"malformed header line {line[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return int(parts[1]), parts[0], headers

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise MalformedResponse("chunk header line too long")
            self._fill()

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size_field = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise MalformedResponse(f"bad chunk size {size_field[:20]!r}") from None
            if size == 0:
                while self._read_line():  # trailer fields, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            if self._read_exact(2) != b"\r\n":
                raise MalformedResponse("chunk not followed by CRLF")

    def _read_to_close(self) -> bytes:
        while True:
            chunk = self._sock.recv(_RECV_BYTES)
            if not chunk:
                data = bytes(self._buffer)
                self._buffer.clear()
                return data
            self._buffer += chunk
