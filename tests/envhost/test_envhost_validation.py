"""Request validation on a real server: every field of every body is checked (a 4xx, never
a 500), env kwargs cannot name code, async vector envs count against the process limit,
and what a client sends reaches the log as one escaped line."""

from __future__ import annotations

import logging

import gymnasium
import numpy as np
import pytest
from wire_client import WireClient

from agentgpt.envhost import EnvServer, run_server_in_thread
from agentgpt.envhost.kwargs import KwargsRules, code_reference_in, key_words, names_code
from agentgpt.envhost.server import default_max_processes

KEY = "validation-key"


class Recorder(gymnasium.Env):
    """Keeps the kwargs it was made with, so a test can see what reached the env."""

    made: list[dict] = []
    observation_space = gymnasium.spaces.Discrete(2)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, **kwargs):
        Recorder.made.append(kwargs)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


class Labelled(gymnasium.Env):
    """Refuses a label it does not know, quoting it, as many envs do with bad values."""

    observation_space = gymnasium.spaces.Discrete(2)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, label="a"):
        if label != "a":
            raise ValueError(f"unknown label {label}")

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


REGISTERED = {"test/Recorder-v0": Recorder, "test/Labelled-v0": Labelled}


@pytest.fixture(scope="module")
def url():
    server = EnvServer(api_keys=[KEY], register=REGISTERED, max_envs_per_key=64)
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.fixture
def client(url):
    with WireClient(url, KEY) as c:
        yield c


def assert_refused(answer, status, error_type, *fragments):
    assert answer.status == status, answer.body
    assert answer.body["error"]["type"] == error_type, answer.body
    for fragment in fragments:
        assert fragment in answer.body["error"]["message"], answer.body


# ---------------------------------------------------------------- every field, every type

MAKE = {"env_name": "CartPole-v1"}
MAKE_VEC = {"env_name": "CartPole-v1", "num_envs": 2}


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("/make", {**MAKE, "autoreset_mode": {"next_step": 1}}, "autoreset_mode must be one of"),
        ("/make", {**MAKE, "autoreset_mode": ["next_step"]}, "autoreset_mode must be one of"),
        ("/make_vec", {**MAKE_VEC, "autoreset_mode": {}}, "autoreset_mode must be one of"),
        ("/make_vec", {**MAKE_VEC, "autoreset_mode": []}, "autoreset_mode must be one of"),
        ("/make_vec", {**MAKE_VEC, "vectorization_mode": {}}, "vectorization_mode must be"),
        ("/make_vec", {**MAKE_VEC, "vectorization_mode": ["sync"]}, "vectorization_mode must"),
        ("/make", {**MAKE, "seed": "7"}, "seed must be an integer"),
        ("/make", {**MAKE, "seed": 7.0}, "seed must be an integer"),
        ("/make", {**MAKE, "seed": True}, "seed must be an integer"),
        ("/make", {**MAKE, "seed": -1}, "seed must be non-negative"),
        ("/make", {**MAKE, "seed": 2**64}, "seed must be below 2**64"),
        ("/make", {**MAKE, "seed": 10**40}, "seed must be below 2**64"),
        ("/make", {**MAKE, "seed": [1]}, "seed must be an integer"),
        ("/make", {"env_name": 5}, "env_name must be a non-empty string"),
        ("/make", {"env_name": ["CartPole-v1"]}, "env_name must be a non-empty string"),
        ("/make", {"env_name": {}}, "env_name must be a non-empty string"),
        ("/make", {"env_id": 1.5}, "env_id must be a non-empty string"),
        ("/make", {"env_name": "C" * 257}, "at most 256 characters"),
        ("/make", {**MAKE, "render_mode": 3}, "render_mode must be a render mode name"),
        ("/make", {**MAKE, "render_mode": "rgb array"}, "render_mode must be a render mode"),
        ("/make", {**MAKE, "render_mode": "\x1b[31m"}, "render_mode must be a render mode"),
        ("/make", {**MAKE, "render_mode": "human"}, "render_mode 'human' is not available"),
        ("/make", {**MAKE, "kwargs": []}, "kwargs must be a map"),
        ("/make", {**MAKE, "kwargs": "max_episode_steps=3"}, "kwargs must be a map"),
        ("/make", {**MAKE, "kwargs": {"bad key": 1}}, "must be a Python identifier"),
        ("/make", {**MAKE, "kwargs": {"a\nb": 1}}, "must be a Python identifier"),
        ("/make", {**MAKE, "kwargs": {"id": "Acrobot-v1"}}, "kwargs cannot carry 'id'"),
        ("/make_vec", {**MAKE_VEC, "kwargs": {"num_envs": 3}}, "cannot carry 'num_envs'"),
        ("/make_vec", {**MAKE_VEC, "kwargs": {"vector_kwargs": {}}}, "cannot carry"),
        ("/make_vec", {**MAKE_VEC, "kwargs": {"wrappers": ["x"]}}, "cannot carry 'wrappers'"),
        ("/make_vec", {"env_name": "CartPole-v1"}, "num_envs must be an integer >= 1"),
        ("/make_vec", {**MAKE, "num_envs": "2"}, "num_envs must be an integer"),
        ("/make_vec", {**MAKE, "num_envs": 2.0}, "num_envs must be an integer"),
        ("/make_vec", {**MAKE, "num_envs": -3}, "num_envs must be an integer >= 1"),
        ("/make_vec", {**MAKE, "num_envs": [2]}, "num_envs must be an integer"),
        ("/reset", {"env_key": 5}, "env_key must be a non-empty string"),
        ("/reset", {"env_key": ["k"]}, "env_key must be a non-empty string"),
        ("/step", {"env_key": {}, "action": 0}, "env_key must be a non-empty string"),
        ("/render", {"env_key": 1.5}, "env_key must be a non-empty string"),
        ("/close", {"env_key": True}, "env_key must be a non-empty string"),
    ],
)
def test_a_field_of_the_wrong_type_or_value_is_422(client, route, body, fragment):
    assert_refused(client.post(route, body), 422, "invalid_argument", fragment)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"seed": "1"}, "seed must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": 2**64}, "seed must be below 2**64"),
        ({"seed": [1, 2]}, "seed must be an integer"),
        ({"options": "x"}, "options must be a map"),
        ({"options": [1]}, "options must be a map"),
    ],
)
def test_reset_fields_of_the_wrong_type_are_422(client, body, fragment):
    key = client.post("/make", MAKE).body["env_key"]
    try:
        assert_refused(
            client.post("/reset", {"env_key": key, **body}), 422, "invalid_argument", fragment
        )
    finally:
        client.post("/close", {"env_key": key})


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"seed": 2**64}, "seed must be below 2**64"),
        ({"seed": [1, "2"]}, "each seed must be a non-negative integer"),
        ({"seed": [1, 2**70]}, "each seed must be below 2**64"),
        ({"seed": [1, 2.5]}, "each seed must be a non-negative integer"),
        ({"seed": {"0": 1}}, "seed must be an integer, a list"),
        ({"options": {"reset_mask": {"0": True}}}, "options.reset_mask must be a list"),
        ({"options": {"reset_mask": "tt"}}, "options.reset_mask must be a list"),
    ],
)
def test_vector_reset_fields_of_the_wrong_type_are_422(client, body, fragment):
    key = client.post("/make_vec", MAKE_VEC).body["env_key"]
    try:
        assert_refused(
            client.post("/reset", {"env_key": key, **body}), 422, "invalid_argument", fragment
        )
    finally:
        client.post("/close", {"env_key": key})


@pytest.mark.parametrize(
    "action", [[0, 1], "0", {"a": 0}, 2**70, -(2**70), 1.5, None, [[0]], "NaN", True]
)
def test_an_action_of_the_wrong_type_or_shape_is_422(client, action):
    key = client.post("/make", MAKE).body["env_key"]
    try:
        client.post("/reset", {"env_key": key})
        assert_refused(
            client.post("/step", {"env_key": key, "action": action}), 422, "invalid_action"
        )
    finally:
        client.post("/close", {"env_key": key})


@pytest.mark.parametrize("action", [0, [0], [[0, 1], [1, 0]], "x", 2**70, {"a": 1}])
def test_a_vector_action_of_the_wrong_shape_is_422(client, action):
    key = client.post("/make_vec", MAKE_VEC).body["env_key"]
    try:
        client.post("/reset", {"env_key": key})
        assert_refused(
            client.post("/step", {"env_key": key, "action": action}), 422, "invalid_action"
        )
    finally:
        client.post("/close", {"env_key": key})


def test_a_space_route_refuses_an_empty_env_key(client):
    answer = client.get("/action_space", env_key="")
    assert_refused(answer, 422, "invalid_argument", "env_key must be a non-empty string")


# ---------------------------------------------------------------- render_mode in kwargs


def test_render_mode_in_kwargs_is_checked_like_the_field(client):
    answer = client.post("/make", {**MAKE, "kwargs": {"render_mode": "human"}})
    assert_refused(answer, 422, "invalid_argument", "kwargs.render_mode 'human' is not available")
    vec = client.post("/make_vec", {**MAKE_VEC, "kwargs": {"render_mode": "human"}})
    assert_refused(vec, 422, "invalid_argument", "'human' is not available")
    odd = client.post("/make", {**MAKE, "kwargs": {"render_mode": ["rgb_array"]}})
    assert_refused(odd, 422, "invalid_argument", "kwargs.render_mode must be a render mode")
    both = client.post(
        "/make", {**MAKE, "render_mode": "rgb_array", "kwargs": {"render_mode": "ansi"}}
    )
    assert_refused(both, 422, "invalid_argument", "disagree")


def test_render_mode_in_kwargs_is_the_env_render_mode(client):
    made = client.post("/make", {**MAKE, "kwargs": {"render_mode": "rgb_array"}})
    assert made.status == 200, made.body
    key = made.body["env_key"]
    client.post("/reset", {"env_key": key})
    frame = client.post("/render", {"env_key": key})
    assert frame.body["types"] == {"render": {"array": "|u1"}}
    client.post("/close", {"env_key": key})


# ---------------------------------------------------------------- kwargs that name code


def test_the_kwargs_rules():
    assert key_words("env_id") == ["env", "id"] == key_words("envId")
    assert key_words("XMLFile") == ["xml", "file"] == key_words("xml-file")
    for key in ("env_id", "entry_point", "module", "moduleName", "xml_file", "env", "spec"):
        assert names_code(key), key
    for key in ("max_episode_steps", "map_name", "is_slippery", "continuous", "idle"):
        assert not names_code(key), key
    assert code_reference_in("os:system") == "os:system"
    assert code_reference_in({"a": [1, {"b": "pkg.mod:Factory-v0"}]}) == "pkg.mod:Factory-v0"
    assert code_reference_in({"pkg:Thing": 1}) == "pkg:Thing"
    assert code_reference_in(" pkg.mod : Thing.make ") == " pkg.mod : Thing.make "
    for value in ("12:30", "http://example.com", "C:\\maps", "8x8", "note: two words", 3, None):
        assert code_reference_in(value) is None, value
    with pytest.raises(ValueError):
        KwargsRules([""])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"env_id": "CartPole-v1"}, "kwargs.env_id is refused"),
        ({"entry_point": "os:system"}, "kwargs.entry_point is refused"),
        ({"module": "os"}, "kwargs.module is refused"),
        ({"xml_file": "/etc/passwd"}, "kwargs.xml_file is refused"),
        ({"target": "os:system"}, "'os:system', which reads as 'module:attribute'"),
        ({"opts": {"inner": ["pkg.mod:Thing-v0"]}}, "kwargs.opts is refused"),
    ],
)
def test_kwargs_that_name_code_are_refused_before_the_env_is_made(client, kwargs, fragment):
    Recorder.made.clear()
    answer = client.post("/make", {"env_name": "test/Recorder-v0", "kwargs": kwargs})
    assert_refused(answer, 422, "invalid_argument", fragment, "--allow-kwargs")
    vec = client.post(
        "/make_vec", {"env_name": "test/Recorder-v0", "num_envs": 2, "kwargs": kwargs}
    )
    assert_refused(vec, 422, "invalid_argument", fragment)
    assert Recorder.made == []


def test_a_gymnasium_id_gets_the_same_rules(client):
    # Shimmy's GymV26Environment-v0 makes what kwargs.env_id names; any id is refused alike.
    answer = client.post("/make", {**MAKE, "kwargs": {"env_id": "module:Env-v0"}})
    assert_refused(answer, 422, "invalid_argument", "kwargs.env_id is refused")


def test_plain_kwargs_reach_the_env(client):
    Recorder.made.clear()
    kwargs = {"level": "12:30", "site": "http://example.com", "size": [3, 4], "idle": None}
    made = client.post("/make", {"env_name": "test/Recorder-v0", "kwargs": kwargs})
    assert made.status == 200, made.body
    assert Recorder.made == [kwargs]
    client.post("/close", {"env_key": made.body["env_key"]})
    lake = client.post("/make", {"env_name": "FrozenLake-v1", "kwargs": {"map_name": "8x8"}})
    assert lake.status == 200, lake.body
    client.post("/close", {"env_key": lake.body["env_key"]})


def test_the_operator_allows_kwargs_by_key(env_server):
    Recorder.made.clear()
    url = env_server(api_keys=[KEY], register=REGISTERED, allow_kwargs=["env_id"])
    with WireClient(url, KEY) as c:
        allowed = c.post("/make", {"env_name": "test/Recorder-v0", "kwargs": {"env_id": "a:b"}})
        assert allowed.status == 200, allowed.body
        other = c.post("/make", {"env_name": "test/Recorder-v0", "kwargs": {"module": "os"}})
        assert_refused(other, 422, "invalid_argument", "kwargs.module is refused")
    assert Recorder.made == [{"env_id": "a:b"}]
    url = env_server(api_keys=[KEY], register=REGISTERED, allow_kwargs=["*"])
    with WireClient(url, KEY) as c:
        body = {"env_name": "test/Recorder-v0", "kwargs": {"module": "os", "f": "os:system"}}
        assert c.post("/make", body).status == 200
        # Reserved keys and the render mode are the protocol's, whatever the operator allows.
        reserved = c.post("/make", {"env_name": "test/Recorder-v0", "kwargs": {"id": "x"}})
        assert_refused(reserved, 422, "invalid_argument", "cannot carry 'id'")
        human = c.post(
            "/make", {"env_name": "test/Recorder-v0", "kwargs": {"render_mode": "human"}}
        )
        assert_refused(human, 422, "invalid_argument", "'human' is not available")


# ---------------------------------------------------------------- the log


FORGED = "b\nINFO:     made single env 0 for admin\x1b[2J\x1b[31m\u2028"


def test_an_env_error_is_one_escaped_log_line_without_traceback(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="agentgpt"):
        answer = client.post("/make", {"env_name": "test/Labelled-v0", "kwargs": {"label": FORGED}})
    assert_refused(answer, 500, "env_error", "ValueError: unknown label b\\nINFO:")
    message = answer.body["error"]["message"]
    assert "\n" not in message and "\x1b" not in message and "\u2028" not in message
    assert "\\x1b[2J\\x1b[31m\\u2028" in message
    errors = [
        r for r in caplog.records if r.name.startswith("agentgpt") and r.levelno >= logging.WARNING
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert line == f"env_error: {message}"
    assert "\n" not in line and "\x1b" not in line and "Traceback" not in line
    # The traceback is there for an operator who asks for debug records.
    debug = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("agentgpt") and r.levelno == logging.DEBUG
    ]
    assert any(m.startswith("env_error traceback:\nTraceback") for m in debug), debug


def test_unknown_kwargs_are_one_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="agentgpt"):
        for _ in range(3):
            answer = client.post("/make", {**MAKE, "kwargs": {"no_such_argument": 1}})
            assert_refused(answer, 500, "env_error", "no_such_argument")
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("agentgpt") and r.levelno >= logging.WARNING
    ]
    assert len(lines) == 3 and all("\n" not in line for line in lines), lines


def test_debug_mode_still_sends_the_traceback(env_server):
    url = env_server(api_keys=[KEY], register=REGISTERED, debug=True)
    with WireClient(url, KEY) as c:
        answer = c.post("/make", {"env_name": "test/Labelled-v0", "kwargs": {"label": "z"}})
    assert answer.status == 500
    assert "Traceback" in answer.body["error"]["traceback"]


# ---------------------------------------------------------------- processes


def test_the_process_limit_defaults_to_the_cpus():
    assert EnvServer().table.max_processes == default_max_processes() >= 1
    with pytest.raises(ValueError):
        EnvServer(max_processes=-1)


def test_async_vector_envs_count_against_the_process_limit(env_server):
    server = EnvServer(api_keys=[KEY], max_processes=1)
    url = env_server(server)
    with WireClient(url, KEY) as c:
        body = {**MAKE, "vectorization_mode": "async"}
        # 64 sub-envs would be 64 processes: refused before any starts.
        many = c.post("/make_vec", {**body, "num_envs": 64})
        assert_refused(many, 429, "too_many_processes", "limit is 1", "--max-processes", "'sync'")
        assert server.table.processes == 0
        # Sync vector envs and single envs run no process.
        sync = c.post("/make_vec", {**MAKE, "num_envs": 4})
        assert sync.status == 200, sync.body
        one = c.post("/make_vec", {**body, "num_envs": 1})
        assert one.status == 200, one.body
        assert server.table.processes == 1
        second = c.post("/make_vec", {**body, "num_envs": 1})
        assert_refused(second, 429, "too_many_processes", "runs 1 and its limit is 1")
        assert c.post("/close", {"env_key": one.body["env_key"]}).status == 200
        assert server.table.processes == 0
        c.post("/close", {"env_key": sync.body["env_key"]})


def test_a_huge_num_envs_is_refused_before_anything_is_built(client):
    for mode in ("sync", "async"):
        body = {**MAKE, "num_envs": 10**30, "vectorization_mode": mode}
        assert_refused(client.post("/make_vec", body), 429, "too_many_envs", "limit of 64")


def test_no_process_limit_refuses_every_async_vector_env(env_server):
    url = env_server(api_keys=[KEY], max_processes=0)
    with WireClient(url, KEY) as c:
        answer = c.post("/make_vec", {**MAKE, "num_envs": 1, "vectorization_mode": "async"})
        assert_refused(answer, 429, "too_many_processes", "limit is 0")
        made = c.post("/make_vec", {**MAKE, "num_envs": 2})
        assert made.status == 200, made.body
        obs = c.post("/reset", {"env_key": made.body["env_key"]}).body["observation"]
        assert np.asarray(obs).shape == (2, 4)


def test_the_command_line_sets_the_process_limit_and_the_allowed_kwargs(monkeypatch):
    from typer.testing import CliRunner

    from agentgpt.cli import app

    served = []
    monkeypatch.setattr(EnvServer, "run", lambda self, *args, **kwargs: served.append(self))
    command = ["env-server", "--max-processes", "3", "--allow-kwargs", "env_id"]
    result = CliRunner().invoke(app, [*command, "--allow-kwargs", "xml_file"])
    assert result.exit_code == 0, result.output
    (server,) = served
    assert server.table.max_processes == 3
    assert server.kwargs_rules.allowed == {"env_id", "xml_file"}
    result = CliRunner().invoke(app, ["env-server"])
    assert result.exit_code == 0, result.output
    assert served[1].table.max_processes == default_max_processes()
    assert not served[1].kwargs_rules.allowed and not served[1].kwargs_rules.allow_all
