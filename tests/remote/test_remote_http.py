"""The transport's HTTP/1.1 reader and error mapping, against real sockets.

A real env server only sends plain ``Content-Length`` answers; proxies and load balancers
in front of one may send chunked bodies, interim responses, HTML error pages or close the
connection, and a URL may point at something that is no env server at all. These tests play
such peers byte for byte over real sockets.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from agentgpt.remote import (
    AuthError,
    ClientClosedError,
    NoAnswerError,
    NotFoundError,
    ProtocolError,
    RemoteEnvError,
    Transport,
    UnavailableError,
)
from agentgpt.remote.http11 import IncompleteResponse, MalformedResponse, ResponseReader
from agentgpt.wire import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, encode


def _reader_for(*pieces: bytes, close: bool = True) -> tuple[ResponseReader, socket.socket]:
    """A reader whose peer has sent ``pieces`` (as separate writes) and maybe hung up."""
    ours, theirs = socket.socketpair()
    for piece in pieces:
        theirs.sendall(piece)
    if close:
        theirs.close()
    return ResponseReader(ours), theirs


def test_content_length_body_and_following_response():
    reader, _ = _reader_for(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!"
    )
    first = reader.read_response()
    assert (first.status, first.body, first.keep_alive) == (200, b"{}", True)
    assert first.headers["content-type"] == "application/json"
    second = reader.read_response()
    assert (second.status, second.body) == (404, b"nope!")


def test_bytes_arriving_in_small_pieces():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    reader, _ = _reader_for(*[raw[i : i + 3] for i in range(0, len(raw), 3)])
    assert reader.read_response().body == b"0123456789"


def test_chunked_body_with_extensions_and_trailers():
    reader, _ = _reader_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n"
    )
    response = reader.read_response()
    assert response.body == b"Wikipedia" and response.keep_alive


def test_interim_responses_are_skipped():
    reader, _ = _reader_for(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    response = reader.read_response()
    assert (response.status, response.body) == (200, b"ok")


def test_body_ended_by_close_and_connection_close():
    reader, _ = _reader_for(b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>upstream down</html>")
    response = reader.read_response()
    assert (response.status, response.body, response.keep_alive) == (
        502,
        b"<html>upstream down</html>",
        False,
    )
    reader, _ = _reader_for(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert reader.read_response().keep_alive is False


def test_http_1_0_keeps_alive_only_when_asked():
    reader, _ = _reader_for(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    )
    assert reader.read_response().keep_alive is False
    assert reader.read_response().keep_alive is True


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # hung up mid-body
        b"",  # hung up before answering
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # mid-chunk
    ],
)
def test_truncated_responses_raise(raw):
    reader, _ = _reader_for(raw)
    with pytest.raises(IncompleteResponse):
        reader.read_response()


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_responses_raise(raw):
    reader, _ = _reader_for(raw)
    with pytest.raises(MalformedResponse):
        reader.read_response()


@contextlib.contextmanager
def _scripted_server(answers: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """A loopback peer that answers each request with the next canned response.

    Yields its URL and the list of raw requests it received. After an answer containing
    ``Connection: close`` it closes the connection and waits for the next one.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        pending = list(answers)
        while pending:
            conn, _ = listener.accept()
            with conn:
                while pending:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += conn.recv(65536)
                    head, _, body = request.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        )
                    )
                    while len(body) < length:
                        body += conn.recv(65536)
                    requests.append(head + b"\r\n\r\n" + body)
                    answer = pending.pop(0)
                    conn.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        listener.close()
        thread.join(5)


def _msgpack_answer(obj: dict, extra: bytes = b"") -> bytes:
    body = encode(obj, MSGPACK_MEDIA_TYPE)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\n%sContent-Length: %d\r\n\r\n%s"
        % (extra, len(body), body)
    )


def test_transport_writes_one_well_formed_request_and_reconnects_after_close():
    answers = [
        _msgpack_answer({"n": 1}, b"Connection: close\r\n"),
        _msgpack_answer({"n": 2}),
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n"
        b"Content-Length: 20\r\n\r\n<h1>maintenance</h1>",
    ]
    with _scripted_server(answers) as (url, requests):
        transport = Transport(url + "/prefix/", "secret", encoding="msgpack")
        assert transport.post("/step", {"action": 1}) == {"n": 1}
        assert transport.get("/action_space", {"env_key": "k 1"}) == {"n": 2}
        with pytest.raises(RemoteEnvError) as raised:
            transport.post("/reset", {})
        transport.close()
    assert (raised.value.status, raised.value.error_type) == (503, "http_error")
    assert type(raised.value) is UnavailableError
    assert "maintenance" in raised.value.message
    first = requests[0]
    assert first.startswith(b"POST /prefix/step HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer secret\r\n" in first
    assert b"\r\nContent-Type: application/msgpack\r\n" in first
    assert b"\r\nAccept: application/msgpack\r\n" in first
    assert first.endswith(encode({"action": 1}, MSGPACK_MEDIA_TYPE))
    assert requests[1].startswith(b"GET /prefix/action_space?env_key=k+1 HTTP/1.1\r\n")


def test_closed_transport_refuses_requests():
    transport = Transport("http://127.0.0.1:9")
    transport.close()
    with pytest.raises(ClientClosedError) as raised:
        transport.post("/step", {})
    assert (raised.value.status, raised.value.error_type) == (None, "closed")


@pytest.mark.parametrize("url", ["ftp://host/", "localhost:8000", "http://"])
def test_bad_urls_are_rejected(url):
    with pytest.raises(ValueError, match="url"):
        Transport(url)


def _answer(status: str, content_type: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        content_type,
        len(body),
        body,
    )


_HTML = b"text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("answer", "cls", "status", "error_type"),
    [
        # Proxies and load balancers in front of an env server: the status says it all.
        (
            _answer("502 Bad Gateway", _HTML, b"<h1>bad gateway</h1>"),
            UnavailableError,
            502,
            "http_error",
        ),
        (_answer("504 Gateway Timeout", _HTML, b""), UnavailableError, 504, "http_error"),
        (_answer("401 Unauthorized", _HTML, b"login first"), AuthError, 401, "http_error"),
        (
            _answer("404 Not Found", b"text/plain", b"no such path"),
            NotFoundError,
            404,
            "http_error",
        ),
        # A server in the protocol's shape, with an error the vocabulary has.
        (
            _answer(
                "500 Internal Server Error",
                MSGPACK_MEDIA_TYPE.encode(),
                encode({"error": {"type": "internal_error", "message": "bug"}}, MSGPACK_MEDIA_TYPE),
            ),
            UnavailableError,
            500,
            "internal_error",
        ),
        # Peers that are not env servers.
        (_answer("200 OK", _HTML, b"<html>welcome</html>"), ProtocolError, 200, "bad_response"),
        (
            _answer("200 OK", JSON_MEDIA_TYPE.encode(), b"[1, 2]"),
            ProtocolError,
            200,
            "bad_response",
        ),
        (
            _answer("200 OK", JSON_MEDIA_TYPE.encode(), b"{not json"),
            ProtocolError,
            200,
            "bad_response",
        ),
        (
            _answer(
                "418 I'm a teapot",
                JSON_MEDIA_TYPE.encode(),
                b'{"error": {"type": "teapot", "message": "short and stout"}}',
            ),
            ProtocolError,
            418,
            "teapot",
        ),
        (_answer("301 Moved Permanently", _HTML, b"moved"), ProtocolError, 301, "http_error"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", ProtocolError, None, "bad_response"),
        # Hanging up mid-answer is a server going away, not a foreign one.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
            NoAnswerError,
            None,
            "connection_error",
        ),
    ],
)
def test_foreign_peers_raise_the_error_their_answer_calls_for(answer, cls, status, error_type):
    with _scripted_server([answer]) as (url, _):
        transport = Transport(url, encoding="json")
        with pytest.raises(RemoteEnvError) as raised:
            transport.post("/step", {"action": 0})
        transport.close()
    assert type(raised.value) is cls
    assert (raised.value.status, raised.value.error_type) == (status, error_type)
    assert raised.value.message
