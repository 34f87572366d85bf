"""``POST /render`` on the wire: frames as typed arrays or lists, text, ``null``, errors."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from render_envs import UnrenderableEnv
from wire_client import WireClient

from agentgpt.envhost import EnvServer, run_server_in_thread

KEY = "render-routes-key"
OTHER_KEY = "render-routes-other-key"
ENCODINGS = ["json", "msgpack"]
U8 = {"array": "|u1"}


@pytest.fixture(scope="module")
def url():
    server = EnvServer(api_keys=[KEY, OTHER_KEY], register={"CameraShy-v0": UnrenderableEnv})
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.fixture(params=ENCODINGS)
def client(request, url):
    with WireClient(url, KEY, encoding=request.param) as c:
        yield c


def _make(client: WireClient, route: str = "/make", **body: Any) -> str:
    made = client.post(route, body)
    assert made.status == 200, made.body
    return made.body["env_key"]


def _close(client: WireClient, key: str) -> None:
    assert client.post("/close", {"env_key": key}).status == 200


def _error(answer: Any) -> tuple[int, str, str]:
    return answer.status, answer.body["error"]["type"], answer.body["error"]["message"]


def test_a_frame_is_a_typed_array_in_msgpack_and_noted_lists_in_json(client):
    key = _make(client, env_name="CartPole-v1", render_mode="rgb_array")
    client.post("/reset", {"env_key": key, "seed": 3})
    client.post("/step", {"env_key": key, "action": 1})
    answer = client.post("/render", {"env_key": key})
    local = gymnasium.make("CartPole-v1", render_mode="rgb_array")
    local.reset(seed=3)
    local.step(1)
    expected = local.render()
    assert answer.status == 200 and answer.media_type == client.media_type
    assert set(answer.body) == {"render", "types"} and answer.body["types"] == {"render": U8}
    frame = answer.body["render"]
    if client.media_type.endswith("msgpack"):
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8  # raw bytes
    else:
        assert isinstance(frame, list) and frame[0][0] == expected[0, 0].tolist()
    np.testing.assert_array_equal(np.asarray(frame, dtype=np.uint8), expected)
    local.close()
    _close(client, key)


def test_text_renders_as_a_string_without_notes(client):
    key = _make(client, env_name="FrozenLake-v1", render_mode="ansi")
    client.post("/reset", {"env_key": key, "seed": 0})
    local = gymnasium.make("FrozenLake-v1", render_mode="ansi")
    local.reset(seed=0)
    assert client.post("/render", {}).body == {"render": local.render()}  # the only env
    local.close()
    _close(client, key)


def test_a_vector_env_answers_a_list_noted_as_a_tuple(client):
    key = _make(client, "/make_vec", env_name="CartPole-v1", num_envs=2, render_mode="rgb_array")
    client.post("/reset", {"env_key": key, "seed": 5})
    answer = client.post("/render", {"env_key": key})
    assert answer.status == 200
    assert answer.body["types"] == {"render": {"tuple": [U8, U8]}}
    frames = answer.body["render"]
    assert isinstance(frames, list) and len(frames) == 2
    assert all(np.asarray(frame).shape == (400, 600, 3) for frame in frames)
    _close(client, key)


@pytest.mark.parametrize("route", ["/make", "/make_vec"])
def test_an_env_without_a_render_mode_renders_null(client, route):
    vector = {"num_envs": 2} if route == "/make_vec" else {}
    key = _make(client, route, env_name="CartPole-v1", **vector)
    client.post("/reset", {"env_key": key})
    assert client.post("/render", {"env_key": key}).body == {"render": None}
    _close(client, key)


def test_another_keys_env_is_not_found(client, url):
    key = _make(client, env_name="CartPole-v1", render_mode="rgb_array")
    with WireClient(url, OTHER_KEY, encoding="json") as other:
        status, error_type, _ = _error(other.post("/render", {"env_key": key}))
    assert (status, error_type) == (404, "env_not_found")
    _close(client, key)
    status, error_type, _ = _error(client.post("/render", {"env_key": key}))
    assert (status, error_type) == (404, "env_not_found")


def test_a_wrong_env_key_is_invalid_argument(client):
    status, error_type, message = _error(client.post("/render", {"env_key": 7}))
    assert (status, error_type) == (422, "invalid_argument") and "env_key" in message


def test_a_render_that_raises_is_env_error(client):
    key = _make(client, env_name="CameraShy-v0", render_mode="rgb_array")
    client.post("/reset", {"env_key": key})
    answer = client.post("/render", {"env_key": key})
    assert _error(answer) == (500, "env_error", "RuntimeError: this env has no camera")
    assert client.post("/step", {"env_key": key, "action": 0}).status == 200
    _close(client, key)
