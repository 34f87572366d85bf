"""The streaming session's two ways of reading frames: handed straight from the socket to
the session (the project's servers on uvicorn) and through ASGI (any other server, here
uvicorn's stock WebSocket protocol), with the same answers, limits and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import Any

import pytest

from agentgpt.core.busy_poll import BusyPoll
from agentgpt.remote.stream import StreamTransport
from agentgpt.remote.transport import HttpTransport
from agentgpt.service import serving
from agentgpt.service.app import service_app
from agentgpt.service.keys import ApiKeys
from agentgpt.service.testing import serve_in_thread

KEY = "frames-test-key"


@pytest.fixture(params=["direct", "asgi"])
def frames_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``direct``: the servers' own WebSocket protocol; ``asgi``: uvicorn's stock one."""
    if request.param == "asgi":
        monkeypatch.setattr(serving, "direct_frames_protocol", lambda: None)
    return request.param


@contextlib.asynccontextmanager
async def _lifespan(app: Any):
    yield


def _app(post: dict[str, Any], max_in_flight: int = 256, **options: Any) -> Any:
    return service_app(
        post=post,
        get={},
        public={},
        keys=ApiKeys([KEY]),
        max_body_bytes=1 << 20,
        debug=False,
        lifespan=_lifespan,
        stream="/stream",
        max_in_flight=max_in_flight,
        **options,
    )


def test_a_request_that_does_not_wait_is_answered_within_the_read(frames_path) -> None:
    """On the direct path a handler that never waits runs inside the read, outside any
    task; through ASGI each request is a task of its own. The answers are the same."""
    in_task: list[bool] = []

    async def echo(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        in_task.append(asyncio.current_task() is not None)
        return {"n": body["n"], "owner": owner}

    async def waits(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"waited": body["n"]}

    with serve_in_thread(_app({"/echo": echo, "/waits": waits})) as url:
        stream = StreamTransport(url, KEY, timeout=10)
        slow = stream.submit("/waits", {"n": 7})
        fast = [stream.submit("/echo", {"n": i}) for i in range(20)]
        assert [stream.answer(r)["n"] for r in fast] == list(range(20))
        assert stream.answer(slow) == {"waited": 7}
        with pytest.raises(Exception, match="no POST route"):
            stream.post("/missing", {})
        stream.close()
    assert in_task == [frames_path == "asgi"] * 20


def test_a_client_that_never_reads_big_answers_stops_the_server_reading(frames_path) -> None:
    """Answers that are ready at once pile up in the server's write buffer when the client
    reads none of them; the server then stops reading requests (TCP holds the client
    back) instead of answering every one into memory. Once the client reads, all come."""
    handled = [0]
    blob = os.urandom(200_000)

    async def big(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        handled[0] += 1
        return {"n": body["n"], "blob": blob}

    count = 2000  # 400 MB of answers, were they all made at once
    with serve_in_thread(_app({"/big": big})) as url:
        stream = StreamTransport(url, KEY, timeout=30)
        sender = threading.Thread(
            target=lambda: [stream.submit("/big", {"n": i}) for i in range(count)], daemon=True
        )
        sender.start()
        time.sleep(1.5)
        held_at = handled[0]
        # Direct: what the socket buffers hold (a few MB). ASGI: also the 256 requests a
        # connection may have running, each waiting to send its answer.
        assert 0 < held_at < (100 if frames_path == "direct" else 400)
        answers = [stream.answer(i) for i in range(count)]
        sender.join(timeout=30)
        assert [a["n"] for a in answers] == list(range(count))
        assert all(a["blob"] == blob for a in answers[:: count // 10])
        assert handled[0] == count
        stream.close()


async def _echo(owner: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"n": body["n"]}


def _spied_polls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of sockets each busy poll watches (clients here never poll)."""
    polled: list[int] = []
    original = BusyPoll.spin

    def spin(self: BusyPoll, fds: Any) -> bool:
        polled.append(len(fds))
        return original(self, fds)

    monkeypatch.setattr(BusyPoll, "spin", spin)
    return polled


def test_a_connection_awaiting_its_next_request_polls_every_direct_connection(
    monkeypatch,
) -> None:
    """Requests that follow each other closely make the server poll for the next one
    before its loop sleeps; the poll watches every connection whose frames it took, so a
    request on any of them ends it. The answers are those of a server that never polls."""
    polled = _spied_polls(monkeypatch)
    with serve_in_thread(_app({"/echo": _echo}, busy_poll_s=0.01)) as url:
        first = StreamTransport(url, KEY, timeout=10, busy_poll_us=0)
        second = StreamTransport(url, KEY, timeout=10, busy_poll_us=0)
        assert second.post("/echo", {"n": -1}) == {"n": -1}
        assert [first.post("/echo", {"n": i})["n"] for i in range(50)] == list(range(50))
        assert second.post("/echo", {"n": 50}) == {"n": 50}
        first.close()
        second.close()
    assert polled and max(polled) == 2


def test_a_server_with_no_polling_limit_never_polls(monkeypatch) -> None:
    polled = _spied_polls(monkeypatch)
    with serve_in_thread(_app({"/echo": _echo}, busy_poll_s=0.0)) as url:
        stream = StreamTransport(url, KEY, timeout=10, busy_poll_us=0)
        assert [stream.post("/echo", {"n": i})["n"] for i in range(50)] == list(range(50))
        stream.close()
    assert polled == []


@pytest.mark.parametrize("transport", [StreamTransport, HttpTransport])
def test_a_client_whose_answers_come_quickly_learns_to_poll_for_them(transport) -> None:
    with serve_in_thread(_app({"/echo": _echo})) as url:
        polling = transport(url, KEY, timeout=10, busy_poll_us=50_000)
        never = transport(url, KEY, timeout=10, busy_poll_us=0)
        for i in range(30):
            assert polling.post("/echo", {"n": i}) == never.post("/echo", {"n": i}) == {"n": i}
        assert 0 < polling.busy_poll.window_s <= polling.busy_poll.limit_s
        assert never.busy_poll.window_s == 0.0
        polling.close()
        never.close()


@pytest.mark.parametrize("size", [10, 200, 70_000])
@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_answers_of_every_frame_length_reach_the_client(frames_path, size, encoding) -> None:
    async def blob(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"n": body["n"], "text": "é" * body["size"]}

    with serve_in_thread(_app({"/blob": blob})) as url:
        stream = StreamTransport(url, KEY, timeout=10, encoding=encoding)
        for n in range(3):
            assert stream.post("/blob", {"n": n, "size": size}) == {"n": n, "text": "é" * size}
        stream.close()


def test_a_client_with_compression_gets_compressed_answers(frames_path) -> None:
    """Where a client negotiated permessage-deflate, answers go through websockets, which
    compresses them; the client reads them as any other."""
    from websockets.sync.client import connect

    from agentgpt import wire

    async def blob(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"n": body["n"], "text": "a" * 5000}

    with serve_in_thread(_app({"/blob": blob})) as url:
        ws_url = url.replace("http://", "ws://") + "/stream"
        headers = {"Authorization": f"Bearer {KEY}"}
        with connect(ws_url, additional_headers=headers, compression="deflate") as ws:
            assert ws.protocol.extensions  # deflate was negotiated
            for n in range(3):
                ws.send(
                    wire.encode({"id": n, "path": "/blob", "body": {"n": n}}, "application/msgpack")
                )
                answer = wire.decode(ws.recv(), "application/msgpack")
                assert answer["status"] == 200 and answer["body"] == {"n": n, "text": "a" * 5000}


# ------------------------------------------------------- frames read without websockets


def _masked(opcode: Any, payload: bytes, fin: bool = True) -> bytes:
    from websockets.frames import Frame

    return Frame(opcode, payload, fin).serialize(mask=True, extensions=[])


def _request(n: int) -> bytes:
    from websockets.frames import Opcode

    from agentgpt import wire

    frame = {"id": n, "path": "/echo", "body": {"n": n}}
    return _masked(Opcode.BINARY, wire.encode(frame, "application/msgpack"))


def _answers(ws: Any, count: int) -> list[int]:
    from agentgpt import wire

    return [
        wire.decode(ws.recv(timeout=10), "application/msgpack")["body"]["n"] for _ in range(count)
    ]


@contextlib.contextmanager
def _raw_client(url: str):
    """A websockets client whose socket also takes hand-made frames."""
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://") + "/stream"
    headers = {"Authorization": f"Bearer {KEY}"}
    with connect(ws_url, additional_headers=headers, compression=None) as ws:
        yield ws


def test_frames_in_one_write_and_split_over_many_are_all_answered(frames_path, monkeypatch) -> None:
    from agentgpt.wire import wsframes

    read: list[int] = []
    original = wsframes.read_frame

    def spied(data: bytes, start: int, masked: bool, max_size: int) -> Any:
        read.append(start)
        return original(data, start, masked, max_size)

    monkeypatch.setattr(wsframes, "read_frame", spied)
    with serve_in_thread(_app({"/echo": _echo})) as url, _raw_client(url) as ws:
        ws.socket.sendall(_request(1) + _request(2) + _request(3))
        assert _answers(ws, 3) == [1, 2, 3]
        split = _request(4) + _request(5)
        for i in range(0, len(split), 3):  # a few bytes per read
            ws.socket.sendall(split[i : i + 3])
            time.sleep(0.002)
        assert _answers(ws, 2) == [4, 5]
    assert bool(read) == (frames_path == "direct")  # the direct path reads frames itself


def test_pings_are_answered_and_fragmented_messages_read_between_requests(frames_path) -> None:
    from websockets.frames import Opcode

    from agentgpt import wire

    with serve_in_thread(_app({"/echo": _echo})) as url, _raw_client(url) as ws:
        ws.socket.sendall(_request(1))
        assert _answers(ws, 1) == [1]
        assert ws.ping(b"are you there").wait(timeout=10)  # a pong came back
        ws.socket.sendall(_request(2))
        assert _answers(ws, 1) == [2]
        # A message in three fragments: the rest of the connection is websockets' to read.
        body = wire.encode({"id": 3, "path": "/echo", "body": {"n": 3}}, "application/msgpack")
        ws.socket.sendall(
            _masked(Opcode.BINARY, body[:4], fin=False)
            + _masked(Opcode.CONT, body[4:9], fin=False)
            + _masked(Opcode.CONT, body[9:])
            + _request(4)
        )
        assert _answers(ws, 2) == [3, 4]
        assert ws.ping().wait(timeout=10)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x82, 0x01]) + b"x", 1002),  # a client frame without a mask
        (bytes([0x81, 0x82, 0, 0, 0, 0]) + b"\xff\xfe", 1007),  # text that is not UTF-8
        (bytes([0x83, 0x80, 0, 0, 0, 0]), 1002),  # an unknown opcode
    ],
    ids=["unmasked", "bad utf-8", "opcode 3"],
)
def test_a_broken_frame_closes_its_connection_with_the_right_code(frames_path, frame, code) -> None:
    from websockets.exceptions import ConnectionClosedError

    with serve_in_thread(_app({"/echo": _echo})) as url:
        with _raw_client(url) as ws:
            ws.socket.sendall(_request(1))
            assert _answers(ws, 1) == [1]
            ws.socket.sendall(frame)
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        with _raw_client(url) as other:  # the server goes on for others
            other.socket.sendall(_request(2))
            assert _answers(other, 1) == [2]


def test_a_close_from_the_client_is_answered(frames_path) -> None:
    with serve_in_thread(_app({"/echo": _echo})) as url, _raw_client(url) as ws:
        ws.socket.sendall(_request(1))
        assert _answers(ws, 1) == [1]
        ws.close(code=1000)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
