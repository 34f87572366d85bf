"""Connection limits (``ConnectionLimits``), on a real uvicorn server over real sockets.

Every limit here holds before any request is authenticated, so a client without a key
can try all of it: heads that never end, heads of megabytes, idle connections and many
connections at once. Each test runs with both of uvicorn's HTTP parsers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import time

import httpx
import pytest

from agentgpt.protocol.errors import ERRORS
from agentgpt.service.app import service_app
from agentgpt.service.connections import ConnectionLimits, guarded_protocol
from agentgpt.service.keys import ApiKeys
from agentgpt.service.testing import serve_in_thread

KEY = "connections-key"
# The slack allowed past a timeout before the server must have acted.
MARGIN = 3.0

IMPLEMENTATIONS = [
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
    "h11",
]


async def echo(owner, payload):
    return {"payload": payload}


def make_app(keys=()):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield

    return service_app(
        post={"/echo": echo},
        get={},
        public={"/health": lambda: {"status": "ok"}},
        keys=ApiKeys(list(keys)),
        max_body_bytes=1024,
        debug=False,
        lifespan=lifespan,
    )


@contextlib.contextmanager
def serving(implementation, keys=(), **limits):
    with serve_in_thread(
        make_app(keys), limits=ConnectionLimits(**limits), implementation=implementation
    ) as url:
        yield url, int(url.rsplit(":", 1)[1])


def connect(port, source="127.0.0.1"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock, timeout):
    """Everything the server sends until it closes; ``TimeoutError`` if it never does."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def error_of(answer):
    """The status and error type of a raw HTTP answer carrying the protocol's error body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"\r\ncontent-type: application/json\r\n" in head.lower() + b"\r\n"
    error = json.loads(body)["error"]
    assert ERRORS[error["type"]].status == status
    return status, error["type"]


def health_answers(url):
    return httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}


def head_of_size(size):
    """A complete ``GET /health`` head of exactly ``size`` bytes."""
    start, end = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def test_limits_are_checked():
    for bad in (
        {"head_timeout": 0},
        {"keep_alive_timeout": -1},
        {"max_head_bytes": 100},
        {"max_connections": 0},
        {"max_connections_per_ip": 0},
    ):
        with pytest.raises(ValueError):
            ConnectionLimits(**bad)
    with pytest.raises(ValueError, match="httptools"):
        guarded_protocol(ConnectionLimits(), "zttp")


# ---------------------------------------------------------------- heads that never end


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_half_open_connections_are_closed_and_health_keeps_answering(implementation):
    head_timeout = 1.0
    with serving(implementation, head_timeout=head_timeout) as (url, port):
        sockets = [connect(port) for _ in range(50)]
        try:
            for sock in sockets:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            started = time.monotonic()
            assert health_answers(url)
            for sock in sockets:
                remaining = head_timeout + MARGIN - (time.monotonic() - started)
                assert read_until_closed(sock, max(remaining, 0.1)) == b""
            assert health_answers(url)
        finally:
            for sock in sockets:
                sock.close()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_head_trickled_byte_by_byte_is_cut_at_the_timeout(implementation):
    head_timeout = 1.0
    with serving(implementation, head_timeout=head_timeout) as (url, port):
        with connect(port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < head_timeout + MARGIN:
                try:
                    sock.sendall(b"X")  # activity does not extend the deadline
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.2)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
                    break
            assert closed
        assert health_answers(url)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_connection_that_sends_nothing_is_closed(implementation):
    with serving(implementation, head_timeout=1.0) as (url, port), connect(port) as sock:
        assert read_until_closed(sock, 1.0 + MARGIN) == b""


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_next_head_on_a_keep_alive_connection_has_the_same_deadline(implementation):
    with (
        serving(implementation, head_timeout=1.0, keep_alive_timeout=30) as (url, port),
        connect(port) as sock,
    ):
        sock.sendall(head_of_size(200))
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # and never more
        assert read_until_closed(sock, 1.0 + MARGIN) == b""


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_slow_request_is_not_cut_once_its_head_is_complete(implementation):
    with serving(implementation, head_timeout=1.0) as (url, port), connect(port) as sock:
        body = b'{"a": 1}'
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(1.5)  # the body comes after the head deadline has passed
        sock.sendall(body)
        sock.settimeout(5)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"payload":{"a":1}}')


# ---------------------------------------------------------------- heads of any size


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_head_at_the_limit_is_served_and_one_byte_more_is_431(implementation):
    limit = 4096
    with serving(implementation, max_head_bytes=limit) as (url, port):
        with connect(port) as sock:
            sock.sendall(head_of_size(limit))
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with connect(port) as sock:
            sock.sendall(head_of_size(limit + 1))
            answer = read_until_closed(sock, 5)
            assert error_of(answer) == (431, "headers_too_large")
        assert health_answers(url)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_an_unfinished_head_past_the_limit_is_refused_without_a_key(implementation):
    limit = 1024
    with (
        serving(implementation, keys=[KEY], max_head_bytes=limit) as (url, port),
        connect(port) as sock,
    ):
        # No end of head and no key: the server refuses it as soon as it is too long.
        sock.sendall(b"POST /echo HTTP/1.1\r\nX-Pad: " + b"a" * (2 * limit))
        answer = read_until_closed(sock, 5)
        assert error_of(answer) == (431, "headers_too_large")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_one_mebibyte_header_is_refused(implementation):
    """With the default limits: the server stops reading long before the end."""
    with serving(implementation) as (url, port):
        with connect(port) as sock:
            head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
            # The server may close the connection while the header is being sent.
            with contextlib.suppress(OSError):
                sock.sendall(head + b"a" * (1 << 20) + b"\r\n\r\n")
            answer = read_until_closed(sock, 5)  # TimeoutError if the server keeps it open
            # Refused (a 431 if the client could read it before the connection closed),
            # never served.
            assert answer == b"" or error_of(answer) == (431, "headers_too_large")
        assert health_answers(url)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_large_body_is_not_counted_as_head(implementation):
    """The head and a body sent in one write: only the head counts toward the limit."""
    limit = 512
    with serving(implementation, max_head_bytes=limit) as (url, port):
        body = json.dumps({"pad": "b" * 900}).encode()  # under the body limit, over the head's
        with connect(port) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            sock.settimeout(5)
            answer = b""
            while b'"}}' not in answer:
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")


# ---------------------------------------------------------------- idle connections


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(implementation):
    keep_alive = 1.0
    with (
        serving(implementation, keep_alive_timeout=keep_alive, head_timeout=30) as (url, port),
        connect(port) as sock,
    ):
        sock.sendall(head_of_size(200))
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert read_until_closed(sock, keep_alive + MARGIN) == b""


# ---------------------------------------------------------------- connection counts


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refused(sock):
    """The server's answer on a connection it refused at once."""
    return error_of(read_until_closed(sock, 5)) == (503, "too_many_connections")


def served(sock):
    sock.sendall(head_of_size(200))
    sock.settimeout(5)
    return sock.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_connections_past_the_per_ip_limit_are_refused_while_others_are_served(
    implementation,
):
    with serving(implementation, max_connections_per_ip=3, head_timeout=30) as (url, port):
        held = [connect(port) for _ in range(3)]
        try:
            with connect(port) as extra:
                assert refused(extra)
            # The connections already open are served, and so is another address.
            assert all(served(sock) for sock in held)
            try:
                other = connect(port, source="127.0.0.2")
            except OSError:
                pytest.skip("cannot bind 127.0.0.2 on this machine")
            with other:
                assert served(other)
            # A closed connection frees its place.
            held.pop().close()
            assert wait_until(lambda: _serves_new_connection(port))
        finally:
            for sock in held:
                sock.close()


def _serves_new_connection(port):
    with connect(port) as sock:
        try:
            return served(sock)
        except OSError:
            return False


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_connections_past_the_total_limit_are_refused(implementation):
    with serving(implementation, max_connections=4, max_connections_per_ip=3, head_timeout=30) as (
        url,
        port,
    ):
        held = [connect(port) for _ in range(3)]
        try:
            try:
                held.append(connect(port, source="127.0.0.2"))
            except OSError:
                pytest.skip("cannot bind 127.0.0.2 on this machine")
            try:
                extra = connect(port, source="127.0.0.3")
            except OSError:
                pytest.skip("cannot bind 127.0.0.3 on this machine")
            with extra:
                assert refused(extra)
            assert all(served(sock) for sock in held)
        finally:
            for sock in held:
                sock.close()
