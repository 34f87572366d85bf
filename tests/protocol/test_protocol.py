"""agentgpt.protocol: its routes are the server's, its errors are the docs', and every
builder and parser pair round-trips through both encodings."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium
import httpx
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from starlette.routing import Route, WebSocketRoute

from agentgpt import wire
from agentgpt.envhost import EnvServer
from agentgpt.protocol import routes
from agentgpt.protocol.answers import (
    MadeAnswer,
    action_space_answer,
    closed_answer,
    health_answer,
    health_incarnation,
    made_answer,
    observation_space_answer,
    read_env_key,
    read_made,
    read_reset,
    read_step,
    reset_answer,
    step_answer,
)
from agentgpt.protocol.autoreset import (
    AUTORESET_MODES,
    GYMNASIUM_INFO_NAMES,
    WIRE_INFO_NAMES,
    autoreset_mode_from_wire,
    autoreset_mode_to_wire,
)
from agentgpt.protocol.errors import ERRORS, ProtocolViolation
from agentgpt.protocol.requests import (
    MakeRequest,
    MakeVecRequest,
    close_request,
    make_request,
    make_vec_request,
    parse_env_key,
    parse_make,
    parse_make_vec,
    parse_reset,
    parse_step_action,
    reset_mask_to_wire,
    reset_request,
    step_request,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ENCODINGS = [wire.JSON_MEDIA_TYPE, wire.MSGPACK_MEDIA_TYPE]


def over_the_wire(body: dict, media_type: str) -> dict:
    """``body`` as the other side decodes it."""
    return wire.decode(wire.encode(body, media_type), media_type)


def docs_section(heading: str) -> str:
    """The text of docs/protocol.md under ``heading`` up to the next heading."""
    text = DOCS.read_text()
    start = text.index(heading + "\n")
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def table_rows(section: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``section``, as stripped cells."""
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def unquoted(cell: str) -> str:
    return cell.strip("`")


# ---------------------------------------------------------------- routes


def test_a_running_server_serves_exactly_the_protocol_routes(env_server):
    server = EnvServer()
    url = env_server(server)
    served = {route.path for route in server.app.routes if isinstance(route, Route)}
    assert served == set(routes.POST_ROUTES) | set(routes.GET_ROUTES)
    streams = [route.path for route in server.app.routes if isinstance(route, WebSocketRoute)]
    assert streams == [routes.STREAM]
    with httpx.Client(base_url=url) as client:
        for path in routes.POST_ROUTES:
            answer = client.get(path)
            assert answer.status_code == 405 and answer.headers["Allow"] == "POST", path
        for path in routes.GET_ROUTES:
            answer = client.post(path)
            assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD", path
        assert client.get(routes.HEALTH).json()["status"] == "ok"
        assert client.get("/no_such_route").status_code == 404


# ---------------------------------------------------------------- errors


def test_the_docs_error_table_lists_exactly_the_vocabulary():
    rows = table_rows(docs_section("## Errors"))
    documented = {
        unquoted(error_type): (int(status), retry.replace(" ", "_"))
        for status, error_type, retry, _ in rows
    }
    assert len(documented) == len(rows), "an error type is listed twice"
    assert documented == {name: (kind.status, kind.retry.value) for name, kind in ERRORS.items()}


def test_a_violation_carries_a_documented_kind():
    violation = ProtocolViolation("invalid_argument", "seed must be an integer, got 'x'")
    assert violation.kind.status == 422 and str(violation) == violation.message
    with pytest.raises(ValueError, match="not a documented error type"):
        ProtocolViolation("no_such_error", "message")


# ---------------------------------------------------------------- requests


def test_docs_make_tables_list_exactly_the_fields_clients_send():
    make_fields = {unquoted(row[0]) for row in table_rows(docs_section("### `POST /make`"))}
    vec_fields = {unquoted(row[0]) for row in table_rows(docs_section("### `POST /make_vec`"))}
    assert set(make_request("CartPole-v1")) == make_fields
    assert set(make_vec_request("CartPole-v1", 2)) == make_fields | vec_fields


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_make_requests_round_trip(media_type):
    body = make_request(
        "CartPole-v1",
        seed=3,
        env_kwargs={"max_episode_steps": 7},
        render_mode="rgb_array",
        autoreset_mode="same_step",
    )
    assert parse_make(over_the_wire(body, media_type)) == MakeRequest(
        "CartPole-v1", 3, {"max_episode_steps": 7}, "rgb_array", "same_step"
    )
    vec = make_vec_request("CartPole-v1", 4, vectorization_mode="async", seed=5)
    assert parse_make_vec(over_the_wire(vec, media_type)) == MakeVecRequest(
        "CartPole-v1", 5, {}, None, "next_step", num_envs=4, vectorization_mode="async"
    )


def test_make_parsers_fill_in_the_defaults_and_the_alias():
    assert parse_make({"env_id": "Pendulum-v1"}) == MakeRequest(
        "Pendulum-v1", None, {}, None, "disabled"
    )
    assert parse_make_vec({"env_name": "Pendulum-v1", "num_envs": 2}) == MakeVecRequest(
        "Pendulum-v1", None, {}, None, "next_step", num_envs=2, vectorization_mode="sync"
    )


@pytest.mark.parametrize(
    ("parse", "payload", "message"),
    [
        (parse_make, {}, "env_name is required (a Gymnasium id such as CartPole-v1)"),
        (
            parse_make,
            {"env_name": "A-v0", "env_id": "B-v0"},
            "env_name and env_id (its alias) disagree; send one",
        ),
        (parse_make, {"env_name": "A-v0", "seed": -1}, "seed must be non-negative, got -1"),
        (parse_make, {"env_name": "A-v0", "seed": True}, "seed must be an integer, got True"),
        (
            parse_make,
            {"env_name": "A-v0", "kwargs": [1]},
            "kwargs must be a map with string keys, got [1]",
        ),
        (
            parse_make,
            {"env_name": "A-v0", "autoreset_mode": "sometimes"},
            "autoreset_mode must be one of 'next_step', 'same_step', 'disabled' or null,"
            " got 'sometimes'",
        ),
        (
            parse_make,
            {"env_name": "A-v0", "render_mode": "human"},
            "render_mode 'human' is not available: the server has no screen (use 'rgb_array')",
        ),
        (parse_make_vec, {"env_name": "A-v0"}, "num_envs must be an integer >= 1, got None"),
        (parse_env_key, {"env_key": ""}, "env_key must be a non-empty string, got ''"),
        (parse_step_action, {"env_key": "k"}, "action is required"),
        (parse_reset, {"options": 3}, "options must be a map with string keys, got 3"),
    ],
)
def test_parsers_refuse_wrong_fields_with_invalid_argument(parse, payload, message):
    with pytest.raises(ProtocolViolation) as caught:
        parse(payload)
    assert caught.value.error_type == "invalid_argument"
    assert caught.value.message == message


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_reset_requests_round_trip(media_type):
    single = over_the_wire(reset_request("k", 7, {"level": 2}), media_type)
    assert parse_env_key(single) == "k"
    parsed = parse_reset(single)
    assert (parsed.seed, parsed.options, parsed.reset_mask) == (7, {"level": 2}, None)
    assert reset_request("k") == {"env_key": "k", "seed": None}  # no options: none sent

    mask = reset_mask_to_wire(np.array([True, False, True]))
    body = over_the_wire(reset_request("k", [1, None, 3], {"reset_mask": mask}), media_type)
    vector = parse_reset(body, num_envs=3)
    assert vector.seed == [1, None, 3]
    np.testing.assert_array_equal(vector.reset_mask, [True, False, True])
    assert vector.options["reset_mask"] is vector.reset_mask


@pytest.mark.parametrize(
    ("seed", "options", "fragment"),
    [
        ([1, 2], None, "a list of 3 seeds, got 2 items"),
        ([1, -2, 3], None, "each seed must be a non-negative integer or null, got -2"),
        ("x", None, "seed must be an integer, a list of integers or null, got 'x'"),
        (-1, None, "seed must be non-negative, got -1"),
        (None, {"reset_mask": [1, 0, 1]}, "options.reset_mask must be a list of 3 booleans"),
        (None, {"reset_mask": [False] * 3}, "with at least one true"),
    ],
)
def test_vector_resets_check_seeds_and_masks(seed, options, fragment):
    with pytest.raises(ProtocolViolation, match=re.escape(fragment)):
        parse_reset(reset_request("k", seed, options), num_envs=3)


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_step_and_close_requests_round_trip(media_type):
    step = over_the_wire(step_request("k", [0, None, 2]), media_type)
    assert (parse_env_key(step), parse_step_action(step)) == ("k", [0, None, 2])
    assert parse_env_key(over_the_wire(close_request("k"), media_type)) == "k"
    assert parse_env_key({}) is None  # the caller's only env


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_made_answers_round_trip(media_type):
    box = spaces.Box(-1.0, 1.0, (3,), np.float32)
    answer = made_answer(
        env_key="k",
        num_envs=4,
        observation_space=wire.space_to_wire(box),
        action_space=wire.space_to_wire(spaces.Discrete(2)),
        agents=None,
        autoreset_mode="next_step",
        incarnation="i",
    )
    decoded = over_the_wire(answer, media_type)
    assert read_env_key(decoded) == "k"
    assert read_made(decoded) == MadeAnswer("k", 4, None, box, spaces.Discrete(2), "next_step", "i")

    agents = made_answer(
        env_key="m",
        num_envs=1,
        observation_space=[wire.space_to_wire(box)] * 2,
        action_space=[wire.space_to_wire(spaces.Discrete(3))] * 2,
        agents=["a", "b"],
        autoreset_mode="disabled",
        incarnation="i",
    )
    made = read_made(over_the_wire(agents, media_type))
    assert made.agents == ["a", "b"]
    assert made.observation_space == [box, box]
    assert made.action_space == [spaces.Discrete(3)] * 2


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_reset_and_step_answers_round_trip(media_type):
    assert read_reset(over_the_wire(reset_answer([0.5], {"x": 1}), media_type)) == (
        [0.5],
        {"x": 1},
    )
    single = over_the_wire(step_answer([0.5], 1.0, True, False, {}), media_type)
    assert read_step(single) == ([0.5], 1.0, True, False, {})
    agents = step_answer([[0.1], None], [1.0, None], [False, None], [True, None], [{}, None])
    assert read_step(over_the_wire(agents, media_type)) == (
        [[0.1], None],
        [1.0, None],
        [False, None],
        [True, None],
        [{}, None],
    )
    vector = over_the_wire(
        step_answer(
            np.zeros((2, 1), np.float32),
            np.array([1.0, 0.0]),
            np.array([True, False]),
            np.array([False, False]),
            {},
        ),
        media_type,
    )
    _, reward, terminated, _, _ = read_step(vector)
    np.testing.assert_array_equal(np.asarray(reward, dtype=np.float64), [1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(terminated, dtype=bool), [True, False])


def test_the_other_answers():
    assert closed_answer("k") == {"closed": True, "env_key": "k"}
    assert action_space_answer({"type": "Discrete"}) == {"action_space": {"type": "Discrete"}}
    assert observation_space_answer([]) == {"observation_space": []}
    health = health_answer("1.2.3", "abc")
    assert health == {"status": "ok", "version": "1.2.3", "incarnation": "abc"}
    assert health_incarnation(health) == "abc" and health_incarnation({}) is None


# ---------------------------------------------------------------- autoreset


def test_autoreset_names_convert_both_ways():
    for name, mode in AUTORESET_MODES.items():
        assert autoreset_mode_from_wire(name) is mode
        assert autoreset_mode_to_wire(mode) == autoreset_mode_to_wire(mode.value) == name
    assert autoreset_mode_to_wire(AutoresetMode.NEXT_STEP) == "next_step"
    with pytest.raises(ValueError, match="unknown autoreset_mode"):
        autoreset_mode_from_wire("sometimes")
    assert {GYMNASIUM_INFO_NAMES[w]: w for w in GYMNASIUM_INFO_NAMES} == WIRE_INFO_NAMES


def test_the_server_answers_what_the_clients_read(env_server):
    """One make answer of the real server, read by the clients' parser."""
    url = env_server()
    with httpx.Client(base_url=url) as client:
        answer = client.post(routes.MAKE_VEC, json=make_vec_request("CartPole-v1", 2)).json()
        made = read_made(answer)
        assert made.num_envs == 2 and made.autoreset_mode == "next_step"
        assert made.observation_space == gymnasium.make("CartPole-v1").observation_space
        client.post(routes.CLOSE, json=close_request(made.env_key)).raise_for_status()


def test_one_line_escapes_what_could_forge_a_log_line():
    from agentgpt.protocol.errors import one_line

    assert one_line("unknown label 8x8 (é, 中)") == "unknown label 8x8 (é, 中)"
    forged = "a\nINFO: forged\r\x1b[31mred\x1b[0m\t\u2028\u202e\x00"
    assert one_line(forged) == "a\\nINFO: forged\\r\\x1b[31mred\\x1b[0m\\t\\u2028\\u202e\\x00"
    assert one_line(forged).isprintable()
    long = one_line("x" * 5000)
    assert len(long) == 1000 and long.endswith("...")
    assert one_line("\n" * 5000).isprintable()
