"""Every route in both encodings against a real server, compared with local Gymnasium."""

from __future__ import annotations

import gymnasium
import httpx
import numpy as np
import pytest
from wire_client import WireClient

from agentgpt import __version__, wire
from agentgpt.envhost import EnvServer, run_server_in_thread

KEY = "routes-key"
ENCODINGS = ["json", "msgpack"]
# One server for the module; each test gets a key of its own, so it sees only its own envs.
TEST_KEYS = [f"routes-key-{i}" for i in range(64)]
_next_key = iter(TEST_KEYS)


@pytest.fixture(scope="module")
def url():
    with run_server_in_thread(EnvServer(api_keys=[KEY, *TEST_KEYS])) as base_url:
        yield base_url


@pytest.fixture(params=ENCODINGS)
def client(request, url):
    with WireClient(url, next(_next_key), encoding=request.param) as c:
        yield c


def _obs(space_wire, value):
    return wire.value_from_wire(wire.space_from_wire(space_wire), value)


def test_health_needs_no_auth_and_reveals_no_envs(url, client):
    client.post("/make", {"env_name": "CartPole-v1"})
    for encoding in ENCODINGS:
        with WireClient(url, encoding=encoding) as anonymous:
            answer = anonymous.get("/health")
            assert answer.status == 200
            assert answer.media_type == anonymous.media_type
            assert set(answer.body) == {"status", "version", "incarnation"}
            assert answer.body["status"] == "ok"
            assert answer.body["version"] == __version__
            assert len(answer.body["incarnation"]) == 32
            int(answer.body["incarnation"], 16)


def test_full_session_matches_local_env(client):
    made = client.post("/make", {"env_name": "CartPole-v1", "seed": 42})
    assert made.status == 200
    assert made.media_type == client.media_type
    body = made.body
    key = body["env_key"]
    assert body["num_envs"] == 1 and body["agents"] is None
    assert body["autoreset_mode"] == "disabled"
    assert body["incarnation"] == client.get("/health").body["incarnation"]
    local = gymnasium.make("CartPole-v1")
    assert wire.space_from_wire(body["observation_space"]) == local.observation_space
    assert wire.space_from_wire(body["action_space"]) == local.action_space

    action_space = client.get("/action_space", env_key=key).body
    assert set(action_space) == {"action_space"}
    assert wire.space_from_wire(action_space["action_space"]) == local.action_space
    observation_space = client.get("/observation_space", env_key=key).body
    assert set(observation_space) == {"observation_space"}
    assert wire.space_from_wire(observation_space["observation_space"]) == local.observation_space

    reset = client.post("/reset", {"env_key": key, "seed": 3, "options": None})
    assert reset.status == 200
    assert set(reset.body) == {"observation", "info"}
    local_obs, _ = local.reset(seed=3)
    np.testing.assert_array_equal(
        _obs(body["observation_space"], reset.body["observation"]), local_obs
    )

    for action in [0, 1, 1, 0, 1]:
        step = client.post("/step", {"env_key": key, "action": action})
        assert step.status == 200
        obs, reward, terminated, truncated, _ = local.step(action)
        np.testing.assert_array_equal(
            _obs(body["observation_space"], step.body["observation"]), obs
        )
        assert step.body["reward"] == reward
        assert step.body["terminated"] is terminated
        assert step.body["truncated"] is truncated
        assert step.body["info"] == {}

    closed = client.post("/close", {"env_key": key})
    assert closed.status == 200 and closed.body == {"closed": True, "env_key": key}
    after = client.post("/step", {"env_key": key, "action": 0})
    assert after.status == 404 and after.body["error"]["type"] == "env_not_found"


def test_make_seed_is_used_by_the_first_reset_without_seed(client):
    client.post("/make", {"env_name": "CartPole-v1", "seed": 7})
    reset = client.post("/reset")
    local_obs, _ = gymnasium.make("CartPole-v1").reset(seed=7)
    space = client.get("/observation_space").body["observation_space"]
    np.testing.assert_array_equal(_obs(space, reset.body["observation"]), local_obs)


def test_msgpack_sends_arrays_as_raw_typed_arrays(url):
    with WireClient(url, KEY, encoding="msgpack") as c:
        c.post("/make", {"env_name": "CartPole-v1"})
        observation = c.post("/reset", {"seed": 1}).body["observation"]
        assert isinstance(observation, np.ndarray)
        assert observation.dtype == np.float32 and observation.shape == (4,)
        c.post("/close")


def test_json_space_bounds_use_the_non_finite_strings(client):
    made = client.post("/make", {"env_name": "CartPole-v1"})
    high = made.body["observation_space"]["high"]
    if client.media_type == wire.JSON_MEDIA_TYPE:
        assert high[1] == "Infinity" and high[3] == "Infinity"
    else:
        assert np.isinf(np.asarray(high, dtype=np.float64)[[1, 3]]).all()


def test_env_id_is_an_alias_of_env_name(client):
    made = client.post("/make", {"env_id": "Pendulum-v1"})
    assert made.status == 200
    assert made.body["action_space"]["type"] == "Box"


def test_env_key_can_be_left_out_when_the_caller_owns_one_env(client):
    first = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    assert client.post("/reset").status == 200
    assert client.post("/step", {"action": 1}).status == 200
    assert client.get("/action_space").body["action_space"]["n"] == 2

    second = client.post("/make", {"env_name": "CartPole-v1"}).body["env_key"]
    ambiguous = client.post("/step", {"action": 1})
    assert ambiguous.status == 409
    assert ambiguous.body["error"]["type"] == "ambiguous_env"
    assert "2 envs" in ambiguous.body["error"]["message"]
    assert client.get("/observation_space").status == 409
    assert client.post("/reset", {"env_key": second}).status == 200

    assert client.post("/close", {"env_key": first}).status == 200
    assert client.post("/step", {"action": 0}).status == 200
    assert client.post("/close").body == {"closed": True, "env_key": second}
    none_left = client.post("/reset")
    assert none_left.status == 404 and none_left.body["error"]["type"] == "env_not_found"


def test_make_vec_matches_local_make_vec(client):
    made = client.post(
        "/make_vec", {"env_name": "CartPole-v1", "num_envs": 3, "vectorization_mode": "sync"}
    )
    assert made.status == 200
    body = made.body
    assert body["num_envs"] == 3 and body["autoreset_mode"] == "next_step"
    assert wire.space_from_wire(body["action_space"]) == gymnasium.spaces.Discrete(2)
    local = gymnasium.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    obs_space = local.observation_space
    act_space = local.action_space

    reset = client.post("/reset", {"seed": 5})
    local_obs, _ = local.reset(seed=5)
    np.testing.assert_array_equal(
        wire.value_from_wire(obs_space, reset.body["observation"]), local_obs
    )

    actions = np.array([0, 1, 0])
    step = client.post("/step", {"action": wire.value_to_wire(act_space, actions)})
    assert step.status == 200
    obs, reward, terminated, truncated, _ = local.step(actions)
    np.testing.assert_array_equal(wire.value_from_wire(obs_space, step.body["observation"]), obs)
    np.testing.assert_array_equal(np.asarray(step.body["reward"], dtype=np.float64), reward)
    np.testing.assert_array_equal(np.asarray(step.body["terminated"], dtype=bool), terminated)
    np.testing.assert_array_equal(np.asarray(step.body["truncated"], dtype=bool), truncated)

    per_env = client.post("/reset", {"seed": [1, None, 3]})
    assert per_env.status == 200


def test_response_encoding_follows_accept_then_content_type(url):
    payload = {"env_name": "CartPole-v1"}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers) as http:
        as_msgpack = http.post(
            "/make",
            content=wire.encode(payload, wire.JSON_MEDIA_TYPE),
            headers={"Content-Type": "application/json", "Accept": "application/msgpack"},
        )
        assert as_msgpack.headers["content-type"] == "application/msgpack"
        key = wire.decode(as_msgpack.content, wire.MSGPACK_MEDIA_TYPE)["env_key"]

        by_content_type = http.post(
            "/reset",
            content=wire.encode({"env_key": key}, wire.MSGPACK_MEDIA_TYPE),
            headers={"Content-Type": "application/x-msgpack"},
        )
        assert by_content_type.headers["content-type"] == "application/msgpack"
        assert "observation" in wire.decode(by_content_type.content, wire.MSGPACK_MEDIA_TYPE)

        # curl -d sends a form content type, which a web page can send too: refused (415).
        form = http.post(
            "/step",
            content=b'{"action": 1}',
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "*/*"},
        )
        assert form.status_code == 415
        assert form.json()["error"]["type"] == "unsupported_media_type"
        # With curl's -H 'Content-Type: application/json' and its Accept: */*: JSON answers.
        curl_like = http.post(
            "/step",
            content=b'{"action": 1}',
            headers={"Content-Type": "application/json", "Accept": "*/*"},
        )
        assert curl_like.status_code == 200
        assert curl_like.headers["content-type"] == "application/json"
        assert curl_like.json()["reward"] == 1.0
        assert http.post("/close", json={"env_key": key}).status_code == 200


def test_seed_zero_is_honoured_not_dropped(client):
    """Seed 0 is a seed like any other (a falsy check would silently drop it)."""
    client.post("/make", {"env_name": "CartPole-v1", "seed": 0})
    made = client.post("/reset")
    local_obs, _ = gymnasium.make("CartPole-v1").reset(seed=0)
    other_obs, _ = gymnasium.make("CartPole-v1").reset(seed=1)
    space = wire.space_from_wire(client.get("/observation_space").body["observation_space"])
    remote_obs = wire.value_from_wire(space, made.body["observation"])
    np.testing.assert_array_equal(remote_obs, local_obs)
    assert not np.array_equal(remote_obs, other_obs)
    again = client.post("/reset", {"seed": 0}).body["observation"]
    np.testing.assert_array_equal(wire.value_from_wire(space, again), local_obs)


class _IntKeyInfo(gymnasium.Wrapper):
    """An env whose info dicts use integer keys, as some simulators' do."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, 3: "three", "n": {7: 1.5}}


def test_integer_info_keys_arrive_as_strings_in_both_encodings():
    server = EnvServer(register={"IntKeys-v0": lambda: _IntKeyInfo(gymnasium.make("CartPole-v1"))})
    with run_server_in_thread(server) as base_url:
        for encoding in ENCODINGS:
            with WireClient(base_url, encoding=encoding) as c:
                c.post("/make", {"env_name": "IntKeys-v0"})
                c.post("/reset", {"seed": 0})
                step = c.post("/step", {"action": 0})
                assert step.status == 200, step.body
                assert step.body["info"] == {"3": "three", "n": {"7": 1.5}}
                c.post("/close")


def test_make_answers_carry_the_env_metadata(client):
    made = client.post("/make", {"env_name": "CartPole-v1"}).body
    assert made["metadata"] == {"render_modes": ["human", "rgb_array"], "render_fps": 50}
    made_vec = client.post("/make_vec", {"env_name": "CartPole-v1", "num_envs": 2}).body
    # One sub-env's metadata: the vector env's autoreset mode is reported on its own.
    assert made_vec["metadata"] == {"render_modes": ["human", "rgb_array"], "render_fps": 50}
    assert made_vec["autoreset_mode"] == "next_step"


def test_answers_note_the_types_the_wire_loses(client):
    """Taxi returns Python ints (observation, reward) and an int8 info array."""
    local = gymnasium.make("Taxi-v4" if "Taxi-v4" in gymnasium.registry else "Taxi-v3")
    client.post("/make", {"env_name": local.spec.id})
    reset = client.post("/reset", {"seed": 3}).body
    local_obs, local_info = local.reset(seed=3)
    assert reset["observation"] == local_obs
    assert reset["types"] == {
        "observation": "int",
        "info": {"dict": {"action_mask": {"array": "|i1"}}},
    }
    assert wire.apply_types(reset["info"], reset["types"]["info"])["action_mask"].dtype == np.int8
    step = client.post("/step", {"action": 1}).body
    assert step["reward"] == -1.0 and step["types"]["reward"] == "int"


def test_answers_of_plain_values_carry_no_types(client):
    client.post("/make", {"env_name": "CartPole-v1"})
    assert "types" not in client.post("/reset", {"seed": 0}).body
    assert "types" not in client.post("/step", {"action": 0}).body
