"""The streaming session itself: many requests in flight on one WebSocket, answers out of
order, refusals at the upgrade, garbage frames, backpressure, a dropped connection, and
clients choosing between the stream and HTTP by themselves."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import gymnasium
import msgpack
import numpy as np
import pytest
from gymnasium import spaces
from websockets.sync.client import connect as ws_connect

from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.remote import RemoteEnv, RemoteVectorEnv
from agentgpt.remote.connect import AutoTransport, open_transport
from agentgpt.remote.errors import AuthError, NoAnswerError, NotFoundError, RemoteEnvError
from agentgpt.remote.stream import StreamRefused, StreamTransport
from agentgpt.remote.testing import same_values
from agentgpt.remote.transport import HttpTransport
from agentgpt.service.app import service_app
from agentgpt.service.keys import ApiKeys
from agentgpt.service.testing import serve_in_thread

KEY = "stream-test-key"


class DelayedEnv(gymnasium.Env):
    """Its step sleeps for the action's number of tenths of a second."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(10)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any):
        time.sleep(int(action) / 10)
        return np.full(1, int(action) / 10, dtype=np.float32), 0.0, False, False, {}


@pytest.fixture(scope="module")
def url():
    server = EnvServer(api_keys=[KEY], register={"delayed": DelayedEnv})
    with run_server_in_thread(server) as base_url:
        yield base_url


def _ws(url: str, key: str | None = KEY):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return ws_connect(
        url.replace("http://", "ws://") + "/stream", additional_headers=headers, compression=None
    )


def test_answers_come_back_out_of_order_and_are_matched_by_id(url) -> None:
    stream = StreamTransport(url, KEY)
    try:
        keys = [stream.post("/make", {"env_name": "delayed"})["env_key"] for _ in range(3)]
        for key in keys:
            stream.post("/reset", {"env_key": key})
        # The slowest step first: its answer arrives last.
        ids = [
            stream.submit("/step", {"env_key": key, "action": action})
            for key, action in zip(keys, (6, 3, 0), strict=True)
        ]
        assert stream.in_flight == 3
        started = time.monotonic()
        fastest = stream.answer(ids[2])
        assert time.monotonic() - started < 0.5  # not held up behind the slow ones
        assert fastest["observation"] == pytest.approx([0.0])
        assert stream.answer(ids[0])["observation"] == pytest.approx([0.6])
        assert stream.answer(ids[1])["observation"] == pytest.approx([0.3])
        assert stream.in_flight == 0
        with pytest.raises(ValueError, match="no request"):
            stream.answer(ids[0])
    finally:
        stream.close()


def test_many_envs_share_one_connection(url, monkeypatch) -> None:
    connects = []
    real = socket.create_connection

    def counting(*args, **kwargs):
        connects.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    stream = StreamTransport(url, KEY)
    try:
        keys = [stream.post("/make", {"env_name": "CartPole-v1"})["env_key"] for _ in range(8)]
        ids = [stream.submit("/reset", {"env_key": key, "seed": i}) for i, key in enumerate(keys)]
        observations = [stream.answer(i)["observation"] for i in ids]
        local = [gymnasium.make("CartPole-v1").reset(seed=i)[0] for i in range(8)]
        assert np.allclose(observations, local)
        assert len(connects) == 1
    finally:
        stream.close()


def test_a_seeded_episode_over_the_stream_equals_a_local_one(url) -> None:
    local = gymnasium.make("CartPole-v1")
    with RemoteEnv(url, "CartPole-v1", KEY, transport="stream") as env:
        assert same_values(env.reset(seed=5), local.reset(seed=5))
        done = False
        while not done:
            action = int(local.action_space.sample())
            remote, expected = env.step(action), local.step(action)
            assert same_values(remote, expected)
            done = expected[2] or expected[3]


def test_the_upgrade_needs_the_key(url) -> None:
    with pytest.raises(AuthError):
        StreamTransport(url, "wrong-key").post("/make", {"env_name": "CartPole-v1"})
    with pytest.raises(AuthError):
        RemoteEnv(url, "CartPole-v1", None, transport="stream")
    with pytest.raises(AuthError):  # "auto" does not fall back to HTTP for a wrong key
        RemoteEnv(url, "CartPole-v1", "wrong-key", transport="auto")


def test_a_garbage_frame_is_refused_and_closes_only_its_connection(url) -> None:
    with _ws(url) as bad, _ws(url) as good:
        good.send(msgpack.packb({"id": 1, "path": "/make", "body": {"env_name": "CartPole-v1"}}))
        bad.send(b"\xc1 not MessagePack")
        refusal = msgpack.unpackb(bad.recv(timeout=10))
        assert refusal["id"] is None and refusal["status"] == 400
        assert refusal["error"]["type"] == "bad_request"
        with pytest.raises(Exception, match="1002"):
            bad.recv(timeout=10)
        made = msgpack.unpackb(good.recv(timeout=10))
        assert made["id"] == 1 and made["status"] == 200
    # A frame that is a map but no request, and an unknown route.
    with _ws(url) as ws:
        ws.send(msgpack.packb({"id": 2, "path": "/nope", "body": {}}))
        answer = msgpack.unpackb(ws.recv(timeout=10))
        assert (answer["id"], answer["status"], answer["error"]["type"]) == (2, 404, "not_found")
        ws.send(msgpack.packb({"path": "/make"}))
        assert msgpack.unpackb(ws.recv(timeout=10))["status"] == 400


def test_json_text_frames_are_answered_in_json(url) -> None:
    import json

    with _ws(url) as ws:
        ws.send(json.dumps({"id": "a", "path": "/make", "body": {"env_name": "CartPole-v1"}}))
        answer = ws.recv(timeout=10)
        assert isinstance(answer, str)
        assert json.loads(answer)["id"] == "a"
    with RemoteEnv(url, "CartPole-v1", KEY, transport="stream", encoding="json") as env:
        assert env.reset(seed=1)[0].shape == (4,)


def test_a_client_that_never_reads_is_held_back_not_buffered() -> None:
    """With at most 4 requests of a connection running, a client that sends 200 and
    reads nothing has at most 4 in the server's hands at any time."""
    running = []
    release = asyncio.Event()
    peak = [0]
    loops: list[asyncio.AbstractEventLoop] = []

    async def hold(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        loops.append(asyncio.get_running_loop())
        running.append(body["n"])
        peak[0] = max(peak[0], len(running))
        await release.wait()
        running.remove(body["n"])
        return {"n": body["n"]}

    @asyncio_lifespan
    async def lifespan(app):
        yield

    app = service_app(
        post={"/hold": hold},
        get={},
        public={},
        keys=ApiKeys([KEY]),
        max_body_bytes=1 << 20,
        debug=False,
        lifespan=lifespan,
        stream="/stream",
        max_in_flight=4,
    )
    with serve_in_thread(app) as url:
        stream = StreamTransport(url, KEY, timeout=10)
        sender = threading.Thread(
            target=lambda: [stream.submit("/hold", {"n": i}) for i in range(200)], daemon=True
        )
        sender.start()
        time.sleep(1.0)
        assert peak[0] == 4 and len(running) == 4
        loops[0].call_soon_threadsafe(release.set)
        sender.join(timeout=30)
        assert not sender.is_alive()
        answers = [stream.answer(i)["n"] for i in range(200)]
        assert answers == list(range(200)) and peak[0] == 4
        stream.close()


def test_a_dropped_connection_fails_requests_at_once_and_the_next_one_reconnects(url) -> None:
    stream = StreamTransport(url, KEY, timeout=30)
    key = stream.post("/make", {"env_name": "delayed"})["env_key"]
    stream.post("/reset", {"env_key": key})
    request = stream.submit("/step", {"env_key": key, "action": 9})
    stream._sock.shutdown(socket.SHUT_RDWR)  # the network drops the connection
    started = time.monotonic()
    with pytest.raises(NoAnswerError):
        stream.answer(request)
    assert time.monotonic() - started < 5  # noticed at once, not after the timeout
    # The env lives on the server; a new connection reaches it.
    assert stream.post("/reset", {"env_key": key})["observation"] == [0.0]
    stream.close()


def test_auto_uses_the_stream_and_falls_back_to_http_where_there_is_none(url) -> None:
    auto = open_transport(url, KEY, kind="auto")
    assert isinstance(auto, AutoTransport) and auto.chosen is None
    auto.post("/make", {"env_name": "CartPole-v1"})
    assert isinstance(auto.chosen, StreamTransport)
    auto.close()

    async def echo(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    @asyncio_lifespan
    async def lifespan(app):
        yield

    old = service_app(  # a server without a streaming session
        post={"/echo": echo},
        get={},
        public={},
        keys=ApiKeys([KEY]),
        max_body_bytes=1 << 20,
        debug=False,
        lifespan=lifespan,
    )
    with serve_in_thread(old) as old_url:
        auto = open_transport(old_url, KEY, kind="auto")
        assert auto.post("/echo", {"x": 1}) == {"x": 1}
        assert isinstance(auto.chosen, HttpTransport)
        auto.close()
        with pytest.raises(StreamRefused):
            StreamTransport(old_url, KEY).post("/echo", {"x": 1})
    with pytest.raises(ValueError, match="transport must be one of"):
        open_transport(url, KEY, kind="carrier-pigeon")


def test_a_stream_to_a_server_that_is_down_is_a_connection_error_until_it_is_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auto = open_transport(f"http://127.0.0.1:{port}", KEY, kind="auto", connect_timeout=2)
    with pytest.raises(NoAnswerError):
        auto.post("/make", {"env_name": "CartPole-v1"})
    assert auto.chosen is None  # nothing settled: the next request tries the stream again
    auto.close()


def test_vector_envs_and_errors_travel_the_stream(url) -> None:
    with RemoteVectorEnv(url, "CartPole-v1", 4, KEY, transport="stream") as envs:
        local = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
        assert same_values(envs.reset(seed=3), local.reset(seed=3))
        actions = np.array([0, 1, 0, 1])
        assert same_values(envs.step(actions), local.step(actions))
    stream = StreamTransport(url, KEY)
    assert stream.get("/health")["status"] == "ok"  # the public routes travel too
    with pytest.raises(NotFoundError) as raised:
        stream.post("/step", {"env_key": "no-such-env", "action": 0})
    assert raised.value.status == 404
    with pytest.raises(RemoteEnvError):
        stream.get("/action_space", {"env_key": "no-such-env"})
    stream.close()


# ------------------------------------------------------------------------------ helpers


def asyncio_lifespan(func):
    import contextlib

    return contextlib.asynccontextmanager(func)


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_request() -> None:
    """The server pings idle streams and closes those that do not answer (here within
    0.3 s); a client back after a pause reconnects instead of failing its request."""
    import uvicorn

    from agentgpt.service.serving import listening_socket, uvicorn_config

    server = EnvServer(api_keys=[KEY])
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn_config(server.app, "warning", ws_ping_interval=0.3, ws_ping_timeout=0.3)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: runner.run(sockets=[sock]), daemon=True)
    thread.start()
    try:
        stream = StreamTransport(f"http://127.0.0.1:{port}", KEY, connect_timeout=30)
        key = stream.post("/make", {"env_name": "CartPole-v1"})["env_key"]
        first = stream._generation
        time.sleep(1.5)  # pinged, unanswered, closed by the server
        assert stream.post("/reset", {"env_key": key, "seed": 1})["observation"] == pytest.approx(
            gymnasium.make("CartPole-v1").reset(seed=1)[0].tolist()
        )
        assert stream._generation == first + 1
        stream.close()
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


def test_answers_between_pings_and_in_fragments_are_all_read() -> None:
    """The client reads whole answer frames itself and hands pings and anything unusual
    (an answer in fragments) to websockets. A websockets server stands in for the env
    server here, to send pings and fragments exactly when wanted."""
    from websockets.sync.server import serve

    pongs: list[bool] = []

    def handler(ws: Any) -> None:
        for n in range(5):
            request = msgpack.unpackb(ws.recv(timeout=10))
            answer = msgpack.packb({"id": request["id"], "status": 200, "body": {"n": n}})
            if n == 1:
                pongs.append(ws.ping(b"still there?").wait(timeout=10))
            if n == 3:
                ws.send([answer[:3], answer[3:7], answer[7:]])  # one message, three frames
            else:
                ws.send(answer)

    with serve(handler, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        stream = StreamTransport(f"http://127.0.0.1:{port}", timeout=10)
        assert [stream.post("/echo", {})["n"] for _ in range(2)] == [0, 1]
        assert stream._frames.reading  # answers so far: read without websockets' parser
        assert [stream.post("/echo", {})["n"] for _ in range(3)] == [2, 3, 4]
        assert not stream._frames.reading  # the fragments went to websockets, as all after
        stream.close()
        server.shutdown()
    assert pongs == [True]
