"""Every bad request gets a clear 4xx naming the agent and the field, and the server goes
on serving everyone else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest

from agentgpt import GPTAPI
from agentgpt.remote.errors import AuthError, BadRequestError, UnavailableError

GOOD = [0.01, 0.02, 0.03, 0.04]


@pytest.fixture
def server(cartpole_run, policy_server) -> Iterator[str]:
    url, _ = policy_server(
        cartpole_run, api_keys=["k1", "k2"], max_agents_per_session=4, max_body_bytes=4096
    )
    yield url


def _post(url: str, path: str, body: dict[str, Any], key: str | None = "k1") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + path, json=body, headers=headers)


def _refused(answer: httpx.Response, status: int, error_type: str, *words: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["type"] == error_type, error
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error["message"]


def _still_serves(url: str) -> None:
    answer = _post(url, "/select_action", {"agent_ids": ["ok"], "observations": [GOOD]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["actions"][0] in (0, 1)


CASES = [
    # (body, words the message must hold)
    (
        {"agent_ids": ["a", "b"], "observations": [GOOD, [0.0, 0.0, 0.0]]},
        ["observations[1]", "'b'", "shape"],
    ),
    ({"agent_ids": ["a"], "observations": [["x", 0.0, 0.0, 0.0]]}, ["observations[0]", "'a'"]),
    ({"agent_ids": ["a", 7, "a"], "observations": [GOOD] * 3}, ["agent_ids", "'a'", "twice"]),
    (
        {"agent_ids": ["a", 3], "observations": [GOOD, [0.0, "NaN", 0.0, 0.0]]},
        ["observations[1]", "agent 3", "NaN"],
    ),
    (
        {"agent_ids": ["a"], "observations": [["Infinity", 0.0, 0.0, 0.0]]},
        ["observations[0]", "'a'", "+inf"],
    ),
    (
        {"agent_ids": ["a"], "observations": [GOOD, GOOD]},
        ["observations", "2 entries", "1 agent_ids"],
    ),
    ({"agent_ids": ["a"]}, ["observations is required"]),
    ({"agent_ids": "a", "observations": [GOOD]}, ["agent_ids must be a list"]),
    ({"agent_ids": [True], "observations": [GOOD]}, ["agent_ids[0]"]),
    (
        {"agent_ids": ["a"], "observations": [GOOD], "observation": 1},
        ["unknown field", "observation"],
    ),
    ({"agent_ids": ["a"], "observations": [GOOD], "deterministic": "yes"}, ["deterministic"]),
]


@pytest.mark.parametrize(("body", "words"), CASES)
def test_bad_select_action_is_a_422_naming_the_agent_and_field(server, body, words) -> None:
    _refused(_post(server, "/select_action", body), 422, "invalid_argument", *words)
    _still_serves(server)


def test_infinity_is_accepted_where_the_space_allows_it(server) -> None:
    """CartPole's velocities are unbounded: an infinite velocity is a valid observation."""
    answer = _post(
        server,
        "/select_action",
        {"agent_ids": ["v"], "observations": [[0.0, "Infinity", 0.0, "-Infinity"]]},
    )
    assert answer.status_code == 200, answer.text


def test_msgpack_arrays_of_the_wrong_shape_or_dtype(server) -> None:
    def send(obs: np.ndarray) -> httpx.Response:
        from agentgpt import wire

        body = wire.encode(
            {"agent_ids": ["m0", "m1"], "observations": obs}, wire.MSGPACK_MEDIA_TYPE
        )
        return httpx.post(
            server + "/select_action",
            content=body,
            headers={"Authorization": "Bearer k1", "Content-Type": "application/msgpack"},
        )

    ok = send(np.zeros((2, 4), np.float32))
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/msgpack")
    assert msgpack.unpackb(ok.content, strict_map_key=False, ext_hook=lambda c, d: d)
    answer = send(np.zeros((2, 5), np.float32))
    assert answer.status_code == 422
    error = msgpack.unpackb(answer.content)["error"]
    assert "observations[0]" in error["message"] and "'m0'" in error["message"]
    assert send(np.array([["a"] * 4] * 2)).status_code == 422
    _still_serves(server)


def test_unknown_dict_key_and_discrete_out_of_range(dict_obs_run, policy_server) -> None:
    url, _ = policy_server(dict_obs_run)
    good = {"goal": 1, "position": [0.0, 0.1]}
    bad_key = {"goal": 1, "position": [0.0, 0.1], "speed": 3}
    answer = _post(
        url, "/select_action", {"agent_ids": ["p", "q"], "observations": [good, bad_key]}, None
    )
    _refused(answer, 422, "invalid_argument", "observations[1]", "'q'", "speed")
    out_of_range = {"goal": 9, "position": [0.0, 0.1]}
    answer = _post(
        url, "/select_action", {"agent_ids": ["p"], "observations": [out_of_range]}, None
    )
    _refused(answer, 422, "invalid_argument", "observations[0]", "'p'", "goal", "9")
    answer = _post(url, "/select_action", {"agent_ids": ["p"], "observations": [good]}, None)
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("/num_input_states", 0, ["[1, 16]"]),
        ("/num_input_states", 17, ["[1, 16]", "17"]),
        ("/num_input_states", 2.5, ["integer"]),
        ("/control_value", 1.5, ["[0, 1]"]),
        ("/control_value", -0.1, ["[0, 1]"]),
        ("/control_value", "high", ["number"]),
    ],
)
def test_settings_out_of_range(server, path, value, words) -> None:
    answer = httpx.put(server + path, json={"value": value}, headers={"Authorization": "Bearer k1"})
    _refused(answer, 422, "invalid_argument", *words)
    _still_serves(server)


def test_too_many_agents_in_a_session(server) -> None:
    answer = _post(
        server, "/select_action", {"agent_ids": list(range(5)), "observations": [GOOD] * 5}
    )
    _refused(answer, 429, "too_many_agents", "at most 4")
    three = {"agent_ids": [1, 2, 3], "observations": [GOOD] * 3, "session": "s"}
    assert _post(server, "/select_action", three).status_code == 200
    two_more = {"agent_ids": [4, 5], "observations": [GOOD] * 2, "session": "s"}
    _refused(_post(server, "/select_action", two_more), 429, "too_many_agents", "limit is 4")
    # Ending agents frees room in the session.
    ended = {"agent_ids": [4], "observations": [GOOD], "terminated_agent_ids": [1], "session": "s"}
    assert _post(server, "/select_action", ended).status_code == 200
    with GPTAPI(server, "k1", session="s") as api, pytest.raises(UnavailableError) as caught:
        api.select_action([9, 10], np.zeros((2, 4)))
    assert caught.value.error_type == "too_many_agents"


def test_an_oversized_body_is_a_413(server) -> None:
    many = {"agent_ids": ["a"], "observations": [[0.123456789] * 4], "session": "x" * 5000}
    _refused(_post(server, "/select_action", many), 413, "payload_too_large", "4096")
    _still_serves(server)


def test_bad_or_missing_key(server) -> None:
    body = {"agent_ids": ["a"], "observations": [GOOD]}
    _refused(_post(server, "/select_action", body, key="nope"), 401, "unauthorized")
    _refused(_post(server, "/select_action", body, key=None), 401, "unauthorized")
    with GPTAPI(server, "wrong") as api, pytest.raises(AuthError):
        api.get_num_input_states()
    assert httpx.get(server + "/ping").json() == {"status": "ok"}  # public, as SageMaker needs
    _still_serves(server)


def test_another_keys_session_is_refused_and_ids_stay_apart(server) -> None:
    body = {"agent_ids": ["a"], "observations": [GOOD], "session": "game-1"}
    assert _post(server, "/select_action", body, key="k1").status_code == 200
    _refused(_post(server, "/select_action", body, key="k2"), 403, "session_forbidden", "game-1")
    with GPTAPI(server, "k2", session="game-1") as api, pytest.raises(AuthError):
        api.set_control_value(0.0)
    with GPTAPI(server, "k1", session="game-1") as api:
        assert api.get_control_value() == 1.0


def test_invocations_with_an_unknown_method(server) -> None:
    answer = _post(server, "/invocations", {"method": "explode"})
    _refused(answer, 422, "invalid_argument", "method", "select_action")
    with GPTAPI(server, "k1") as api, pytest.raises(BadRequestError):
        api.set_num_input_states(99)


def test_sessions_are_limited(cartpole_run) -> None:
    """Every session holds a little state, so a caller cannot make them without bound."""
    api = GPTAPI.local(cartpole_run, max_agents=4)
    engine = api.engine
    for i in range(engine.max_sessions):
        engine.get_num_input_states("local", {"session": f"s{i}"})
    api.session = "one-too-many"
    with pytest.raises(UnavailableError) as caught:
        api.get_num_input_states()
    assert caught.value.error_type == "too_many_agents" and "sessions" in caught.value.message
