"""Every bad input gets its documented status and error type, in the request's encoding,
and the server answers the next good request."""

from __future__ import annotations

import threading
import time

import gymnasium
import httpx
import numpy as np
import pytest
from wire_client import WireClient

from agentgpt.envhost import EnvServer, run_server_in_thread

KEY = "errors-key"
OTHER_KEY = "errors-other-key"
ENCODINGS = ["json", "msgpack"]
TEST_KEYS = [f"errors-key-{i}" for i in range(96)]
_next_key = iter(TEST_KEYS)


class FlakyEnv(gymnasium.Env):
    """Raises from ``step`` on action 1; otherwise a trivial counter."""

    observation_space = gymnasium.spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        if action == 1:
            raise RuntimeError("the simulator crashed")
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, False, {}


class ClosingRecorder(gymnasium.Env):
    """Counts ``close()`` calls so a test can see the idle reaper at work."""

    closed: list[int] = []
    observation_space = gymnasium.spaces.Discrete(3)
    action_space = gymnasium.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return int(action), 0.0, False, False, {}

    def close(self):
        ClosingRecorder.closed.append(1)


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        api_keys=[KEY, OTHER_KEY, *TEST_KEYS],
        register={"test/Flaky-v0": FlakyEnv},
        max_body_bytes=4096,
        max_envs_per_key=4,
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.fixture(params=ENCODINGS)
def client(request, url):
    with WireClient(url, next(_next_key), encoding=request.param) as c:
        yield c


def assert_error(answer, status, error_type, media_type, *fragments):
    assert answer.status == status, answer.body
    assert answer.media_type == media_type
    assert set(answer.body) == {"error"}
    assert set(answer.body["error"]) == {"type", "message"}
    assert answer.body["error"]["type"] == error_type
    message = answer.body["error"]["message"]
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


def assert_serves(client):
    """A good request right after a bad one succeeds."""
    made = client.post("/make", {"env_name": "CartPole-v1"})
    assert made.status == 200
    key = made.body["env_key"]
    assert client.post("/reset", {"env_key": key}).status == 200
    assert client.post("/step", {"env_key": key, "action": 1}).status == 200
    assert client.post("/close", {"env_key": key}).status == 200


def test_malformed_json_is_400(client):
    answer = client.post(
        "/make", content=b'{"env_name": ', headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, "bad_request", client.media_type, "not valid JSON")
    assert_serves(client)


def test_malformed_msgpack_is_400(client):
    # 0xc1 is the one byte MessagePack never uses.
    answer = client.post(
        "/make", content=b"\xc1\x00", headers={"Content-Type": "application/msgpack"}
    )
    assert_error(answer, 400, "bad_request", client.media_type, "not valid MessagePack")
    truncated = client.post(
        "/make", content=b"\x81\xa8env_name", headers={"Content-Type": "application/msgpack"}
    )
    assert_error(truncated, 400, "bad_request", client.media_type)
    assert_serves(client)


def test_a_body_that_is_not_a_map_is_400(client):
    answer = client.post("/make", [1, 2, 3])
    assert_error(answer, 400, "bad_request", client.media_type, "must be a map")
    assert_serves(client)


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("/make", {"env_name": 5}, "env_name"),
        ("/make", {}, "env_name is required"),
        ("/make", {"env_name": "CartPole-v1", "seed": "x"}, "seed"),
        ("/make", {"env_name": "CartPole-v1", "seed": True}, "seed"),
        ("/make", {"env_name": "CartPole-v1", "seed": -1}, "non-negative"),
        ("/make", {"env_name": "CartPole-v1", "kwargs": [1]}, "kwargs"),
        ("/make", {"env_name": "CartPole-v1", "autoreset_mode": "sometimes"}, "autoreset_mode"),
        ("/make", {"env_name": "CartPole-v1", "render_mode": "human"}, "no screen"),
        ("/make", {"env_name": "CartPole-v1", "env_id": "Pendulum-v1"}, "disagree"),
        ("/make_vec", {"env_name": "CartPole-v1"}, "num_envs"),
        ("/make_vec", {"env_name": "CartPole-v1", "num_envs": 0}, "num_envs"),
        ("/make_vec", {"env_name": "CartPole-v1", "num_envs": "2"}, "num_envs"),
        (
            "/make_vec",
            {"env_name": "CartPole-v1", "num_envs": 2, "vectorization_mode": "gpu"},
            "vectorization_mode",
        ),
        ("/reset", {"env_key": 5}, "env_key"),
        ("/step", {"env_key": ["x"], "action": 0}, "env_key"),
    ],
)
def test_wrong_types_are_422(client, route, body, fragment):
    answer = client.post(route, body)
    assert_error(answer, 422, "invalid_argument", client.media_type, fragment)
    assert_serves(client)


def test_wrong_types_on_an_existing_env_are_422(client):
    key = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    for body, fragment in [
        ({"env_key": key, "seed": 1.5}, "seed"),
        ({"env_key": key, "options": 3}, "options"),
    ]:
        assert_error(
            client.post("/reset", body), 422, "invalid_argument", client.media_type, fragment
        )
    assert_error(
        client.post("/step", {"env_key": key}), 422, "invalid_argument", client.media_type, "action"
    )
    vec = client.post("/make_vec", {"env_name": "CartPole-v1", "num_envs": 2}).body["env_key"]
    for seed in [[1], "x", [1, "a"], True, [True, 1]]:
        answer = client.post("/reset", {"env_key": vec, "seed": seed})
        assert_error(answer, 422, "invalid_argument", client.media_type, "seed")
    for mask in [[True], [1, 0], [False, False]]:
        bad_mask = client.post("/reset", {"env_key": vec, "options": {"reset_mask": mask}})
        assert_error(bad_mask, 422, "invalid_argument", client.media_type, "reset_mask")
    assert client.post("/close", {"env_key": vec}).status == 200
    assert client.post("/close", {"env_key": key}).status == 200
    assert_serves(client)


def test_unknown_env_is_404_with_suggestions(client):
    answer = client.post("/make", {"env_name": "CartPol-v1"})
    assert_error(answer, 404, "unknown_env", client.media_type, "'CartPol-v1'", "'CartPole-v1'")
    case = client.post("/make", {"env_name": "cartpole-v1"})
    assert_error(case, 404, "unknown_env", client.media_type, "'CartPole-v1'")
    assert_serves(client)


def test_action_outside_the_space_is_422_naming_space_and_value(client):
    key = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    client.post("/reset", {"env_key": key})
    answer = client.post("/step", {"env_key": key, "action": 7})
    assert_error(answer, 422, "invalid_action", client.media_type, "Discrete(2)", "7")
    for bad in [1.5, "left", [0, 1], None, -1]:
        answer = client.post("/step", {"env_key": key, "action": bad})
        assert_error(answer, 422, "invalid_action", client.media_type, "Discrete(2)")
    # A whole-number float is a valid discrete action.
    assert client.post("/step", {"env_key": key, "action": 1.0}).status == 200

    box = client.post("/make", {"env_name": "Pendulum-v1"}).body["env_key"]
    client.post("/reset", {"env_key": box})
    too_big = client.post("/step", {"env_key": box, "action": [5.0]})
    assert_error(
        too_big, 422, "invalid_action", client.media_type, "Box(-2.0, 2.0, (1,), float32)", "5.0"
    )
    wrong_shape = client.post("/step", {"env_key": box, "action": [0.0, 0.0]})
    assert_error(wrong_shape, 422, "invalid_action", client.media_type, "Box(")
    assert client.post("/step", {"env_key": box, "action": [1.5]}).status == 200
    for env_key in (key, box):
        client.post("/close", {"env_key": env_key})
    assert_serves(client)


def test_oversized_body_is_413(client, url):
    big = {"env_name": "CartPole-v1", "kwargs": {"padding": "x" * 8000}}
    answer = client.post("/make", big)
    assert_error(answer, 413, "payload_too_large", client.media_type, "4096")

    # Without Content-Length (chunked upload) the limit is enforced while reading.
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    chunked = client.request(
        "POST", "/make", content=chunks(), headers={"Content-Type": client.media_type}
    )
    assert_error(chunked, 413, "payload_too_large", client.media_type, "4096")
    assert_serves(client)


def test_missing_or_wrong_key_is_401_with_www_authenticate(url):
    for encoding in ENCODINGS:
        for key in [None, "not-a-key"]:
            with WireClient(url, key, encoding=encoding) as c:
                answer = c.post("/make", {"env_name": "CartPole-v1"})
                assert_error(answer, 401, "unauthorized", c.media_type)
                assert answer.headers["www-authenticate"] == "Bearer"
                assert c.get("/action_space").status == 401
        with WireClient(url, encoding=encoding) as c:
            basic = c.post("/reset", headers={"Authorization": "Basic abc"})
            assert_error(basic, 401, "unauthorized", c.media_type, "Bearer")
        with WireClient(url, KEY, encoding=encoding) as good:
            assert_serves(good)


def test_another_keys_env_is_404(url):
    with WireClient(url, KEY) as owner, WireClient(url, OTHER_KEY, encoding="msgpack") as other:
        key = owner.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
        for route, body in [
            ("/reset", {"env_key": key}),
            ("/step", {"env_key": key, "action": 0}),
            ("/close", {"env_key": key}),
        ]:
            assert_error(other.post(route, body), 404, "env_not_found", other.media_type)
        assert_error(
            other.get("/action_space", env_key=key), 404, "env_not_found", other.media_type
        )
        # Left out, env_key never falls back to someone else's env.
        assert_error(other.post("/reset"), 404, "env_not_found", other.media_type)
        # The owner's env is untouched by all of that.
        assert owner.post("/reset", {"env_key": key}).status == 200
        assert owner.post("/close", {"env_key": key}).status == 200
        assert_serves(other)


def test_stepping_a_closed_env_is_404(client):
    key = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    client.post("/reset", {"env_key": key})
    assert client.post("/close", {"env_key": key}).status == 200
    answer = client.post("/step", {"env_key": key, "action": 0})
    assert_error(answer, 404, "env_not_found", client.media_type, key, "closed by POST /close")
    again = client.post("/close", {"env_key": key})
    assert_error(again, 404, "env_not_found", client.media_type)
    assert_serves(client)


def test_ambiguous_env_key_is_409(client):
    keys = [client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"] for _ in range(2)]
    answer = client.post("/reset")
    assert_error(answer, 409, "ambiguous_env", client.media_type, "env_key")
    for key in keys:
        client.post("/close", {"env_key": key})
    assert_serves(client)


def test_step_before_reset_and_after_the_end_is_409(client):
    key = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    early = client.post("/step", {"env_key": key, "action": 0})
    assert_error(early, 409, "reset_needed", client.media_type, "/reset")
    client.post("/reset", {"env_key": key, "seed": 0})
    for _ in range(500):
        step = client.post("/step", {"env_key": key, "action": 0})
        if step.body["terminated"] or step.body["truncated"]:
            break
    late = client.post("/step", {"env_key": key, "action": 0})
    assert_error(late, 409, "reset_needed", client.media_type, "episode is over")
    assert client.post("/reset", {"env_key": key}).status == 200
    assert client.post("/step", {"env_key": key, "action": 0}).status == 200
    client.post("/close", {"env_key": key})
    assert_serves(client)


def test_too_many_envs_is_429(client):
    keys = [client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"] for _ in range(3)]
    vec = client.post("/make_vec", {"env_name": "CartPole-v1", "num_envs": 2})
    assert_error(vec, 429, "too_many_envs", client.media_type, "limit of 4")
    keys.append(client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"])
    fifth = client.post("/make", {"env_name": "CartPole-v1"})
    assert_error(fifth, 429, "too_many_envs", client.media_type, "holds 4 sub-envs")
    # A failed make does not use up a slot.
    unknown = client.post("/make_vec", {"env_name": "Nope-v0", "num_envs": 1})
    assert unknown.status == 404
    for key in keys:
        client.post("/close", {"env_key": key})
    assert_serves(client)


def test_unknown_route_is_404_and_wrong_method_405(client):
    answer = client.post("/teleport", {"x": 1})
    assert_error(answer, 404, "not_found", client.media_type, "/teleport")
    wrong = client.get("/step")
    assert_error(wrong, 405, "method_not_allowed", client.media_type, "POST")
    assert wrong.headers["allow"] == "POST"
    assert_serves(client)


def test_env_exception_is_500_without_traceback_and_others_keep_working(client):
    flaky = client.post("/make", {"env_name": "test/Flaky-v0"}).body["env_key"]
    healthy = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    client.post("/reset", {"env_key": flaky})
    client.post("/reset", {"env_key": healthy})
    crash = client.post("/step", {"env_key": flaky, "action": 1})
    assert_error(crash, 500, "env_error", client.media_type)
    assert crash.body["error"]["message"] == "RuntimeError: the simulator crashed"
    assert client.post("/step", {"env_key": healthy, "action": 0}).status == 200
    # The env that raised stays usable: its state is the env's business, not the server's.
    survived = client.post("/step", {"env_key": flaky, "action": 0})
    assert survived.status == 200
    assert np.asarray(survived.body["observation"]).tolist() == [1.0]
    for key in (flaky, healthy):
        client.post("/close", {"env_key": key})
    assert_serves(client)


def test_env_construction_error_is_500(client):
    answer = client.post("/make", {"env_name": "CartPole-v1", "kwargs": {"no_such_option": 1}})
    assert_error(answer, 500, "env_error", client.media_type, "TypeError", "no_such_option")
    assert_serves(client)


def test_debug_mode_adds_the_traceback(env_server):
    url = env_server(register={"test/Flaky-v0": FlakyEnv}, debug=True)
    with WireClient(url) as c:
        c.post("/make", {"env_name": "test/Flaky-v0"})
        c.post("/reset")
        crash = c.post("/step", {"action": 1})
        assert crash.status == 500
        assert crash.body["error"]["message"] == "RuntimeError: the simulator crashed"
        assert "Traceback" in crash.body["error"]["traceback"]
        assert "the simulator crashed" in crash.body["error"]["traceback"]


def test_idle_envs_are_closed(env_server):
    ClosingRecorder.closed.clear()
    url = env_server(
        register={"test/Recorder-v0": ClosingRecorder}, idle_timeout=0.3, max_envs_per_key=1
    )
    with WireClient(url) as c:
        key = c.post("/make", {"env_name": "test/Recorder-v0"}).body["env_key"]
        c.post("/reset", {"env_key": key})
        # The reaper closes the env without any request arriving.
        deadline = time.monotonic() + 10
        while not ClosingRecorder.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ClosingRecorder.closed == [1]
        answer = c.post("/step", {"env_key": key, "action": 0})
        assert_error(answer, 404, "env_not_found", c.media_type, "idle for more than 0.3 s")
        # Its slot is free again (the limit is one env).
        assert c.post("/make", {"env_name": "test/Recorder-v0"}).status == 200


def test_requests_keep_an_env_alive(env_server):
    url = env_server(idle_timeout=1.0)
    with WireClient(url) as c:
        c.post("/make", {"env_name": "CartPole-v1"})
        c.post("/reset")
        deadline = time.monotonic() + 2.5  # several idle timeouts of steady use
        while time.monotonic() < deadline:
            assert c.post("/step", {"action": 0}).status in (200, 409)
            time.sleep(0.05)


def test_a_slow_body_does_not_block_other_clients(url):
    """A client that sends its body slowly (chunked) does not stall the server."""
    release = threading.Event()

    def slow_chunks():
        yield b'{"env_name": '
        release.wait(10)
        yield b'"CartPole-v1"}'

    results = []

    def slow_client():
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, headers=headers) as http:
            results.append(http.post("/make", content=slow_chunks()))

    thread = threading.Thread(target=slow_client)
    thread.start()
    with WireClient(url, next(_next_key)) as c:
        assert_serves(c)
    release.set()
    thread.join(10)
    assert results[0].status_code == 200
    env_key = results[0].json()["env_key"]
    with WireClient(url, KEY) as owner:
        assert owner.post("/close", {"env_key": env_key}).status == 200
