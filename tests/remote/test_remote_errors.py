"""Every failure reaches the caller as a RemoteEnvError with the server's status and message,
of the subclass that says what to do about it."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.protocol.errors import ERRORS, Retry
from agentgpt.remote import (
    AuthError,
    BadRequestError,
    ClientClosedError,
    EnvError,
    EnvNotFoundError,
    NoAnswerError,
    NotFoundError,
    ProtocolError,
    RemoteEnv,
    RemoteEnvError,
    RemoteParallelEnv,
    RemoteTimeout,
    RemoteVectorEnv,
    Transport,
    UnavailableError,
)
from agentgpt.remote.errors import remote_error

LANDMARKS = "agentgpt/Landmarks-v0"
KEY = "remote-errors-test-key"
ENCODINGS = ["msgpack", "json"]


class SlowEnv(gymnasium.Env):
    """Each step takes ``delay`` seconds: a stand-in for a heavy simulation."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any):
        time.sleep(self.delay)
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


class BrokenEnv(SlowEnv):
    """Its step raises, as a buggy simulator does."""

    def step(self, action: Any):
        raise RuntimeError("the simulator crashed")


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        api_keys=[KEY],
        register={
            "slow": SlowEnv,
            "broken": BrokenEnv,
            **PETTINGZOO_ENVS,
        },
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unknown_env_is_404_with_suggestions(url, encoding):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(url, "CartPole-v9", KEY, encoding=encoding)
    error = raised.value
    assert type(error) is NotFoundError and error.retry is Retry.NEVER
    assert error.status == 404
    assert error.error_type == "unknown_env"
    assert "CartPole-v1" in error.message
    assert "CartPole-v1" in str(error)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_action_outside_the_space_is_422_and_the_env_keeps_working(url, encoding):
    with RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding) as env:
        env.reset(seed=0)
        with pytest.raises(RemoteEnvError) as raised:
            env.step(7)
        assert isinstance(raised.value, BadRequestError)
        assert raised.value.status == 422
        assert raised.value.error_type == "invalid_action"
        assert "Discrete(2)" in raised.value.message and "7" in raised.value.message
        obs, reward, *_ = env.step(1)
        assert obs.shape == (4,) and reward == 1.0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_step_after_the_end_in_disabled_mode_is_409(url, encoding):
    with RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding) as env:
        env.reset(seed=0)
        terminated = False
        while not terminated:
            terminated = env.step(1)[2]
        with pytest.raises(RemoteEnvError) as raised:
            env.step(1)
        assert (raised.value.status, raised.value.error_type) == (409, "reset_needed")
        assert isinstance(raised.value, BadRequestError)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("api_key", ["wrong-key", None])
def test_wrong_or_missing_key_is_401(url, api_key, encoding):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(url, "CartPole-v1", api_key, encoding=encoding)
    assert (raised.value.status, raised.value.error_type) == (401, "unauthorized")
    assert isinstance(raised.value, AuthError)


def test_invalid_vector_arguments_are_422(url):
    with pytest.raises(RemoteEnvError) as raised:
        RemoteVectorEnv(url, "CartPole-v1", 0, KEY)
    assert (raised.value.status, raised.value.error_type) == (422, "invalid_argument")
    assert isinstance(raised.value, BadRequestError)


def test_server_gone_is_a_connection_error():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        env = RemoteEnv(base_url, "CartPole-v1", KEY)
        env.reset(seed=0)
    with pytest.raises(RemoteEnvError) as raised:
        env.step(0)
    assert type(raised.value) is NoAnswerError and isinstance(raised.value, UnavailableError)
    assert raised.value.status is None
    assert raised.value.error_type == "connection_error"
    assert base_url in raised.value.message
    env.close()  # nothing is left to free; closing must not raise
    assert env.closed


def test_no_server_is_a_connection_error():
    with run_server_in_thread(EnvServer(api_keys=[KEY])) as base_url:
        pass  # the port is free again once the server stopped
    with pytest.raises(RemoteEnvError) as raised:
        RemoteEnv(base_url, "CartPole-v1", KEY, connect_timeout=2.0)
    assert type(raised.value) is NoAnswerError
    assert raised.value.status is None
    assert raised.value.error_type == "connection_error"


def test_read_timeout_is_reported(url):
    with RemoteEnv(url, "slow", KEY, env_kwargs={"delay": 1.0}, timeout=0.2) as env:
        env.reset()
        with pytest.raises(RemoteEnvError) as raised:
            env.step(0)
        assert isinstance(raised.value, RemoteTimeout) and raised.value.retry is Retry.LATER
        assert raised.value.status is None
        assert raised.value.error_type == "timeout"


def test_clients_refuse_the_wrong_kind_of_env_and_free_it():
    # One env per key: a refused env left behind on the server would block the next make.
    server = EnvServer(api_keys=[KEY], register=dict(PETTINGZOO_ENVS), max_envs_per_key=1)
    with run_server_in_thread(server) as base_url:
        for _ in range(2):
            with pytest.raises(TypeError, match="RemoteParallelEnv"):
                RemoteEnv(base_url, LANDMARKS, KEY)
            with pytest.raises(TypeError, match="RemoteEnv"):
                RemoteParallelEnv(base_url, "CartPole-v1", KEY)
        with RemoteEnv(base_url, "CartPole-v1", KEY) as env:
            assert env.reset(seed=0)[0].shape == (4,)


def test_bad_encoding_is_rejected_before_any_request():
    with pytest.raises(ValueError, match="encoding"):
        RemoteEnv("http://127.0.0.1:9", "CartPole-v1", encoding="xml")  # type: ignore[arg-type]


def test_an_env_that_raises_is_an_env_error_and_may_be_made_again(url):
    with RemoteEnv(url, "broken", KEY) as env:
        env.reset(seed=0)
        with pytest.raises(EnvError) as raised:
            env.step(0)
    assert (raised.value.status, raised.value.error_type) == (500, "env_error")
    assert raised.value.message == "RuntimeError: the simulator crashed"
    assert raised.value.retry is Retry.REMAKE


def test_a_closed_env_key_is_env_not_found(url):
    transport = Transport(url, KEY)
    try:
        env_key = transport.post("/make", {"env_name": "CartPole-v1"})["env_key"]
        transport.post("/close", {"env_key": env_key})
        with pytest.raises(EnvNotFoundError) as raised:
            transport.post("/step", {"env_key": env_key, "action": 0})
    finally:
        transport.close()
    assert isinstance(raised.value, NotFoundError)
    assert (raised.value.status, raised.value.error_type) == (404, "env_not_found")
    assert raised.value.retry is Retry.CHECK_SERVER


def test_an_unknown_route_and_a_wrong_method_are_not_found_and_bad_request(url):
    with contextlib.closing(Transport(url, KEY)) as transport:
        with pytest.raises(NotFoundError) as unknown:
            transport.post("/teleport", {})
        with pytest.raises(BadRequestError) as wrong_method:
            transport.get("/step")
    assert (unknown.value.status, unknown.value.error_type) == (404, "not_found")
    assert type(unknown.value) is NotFoundError
    assert (wrong_method.value.status, wrong_method.value.error_type) == (
        405,
        "method_not_allowed",
    )


def test_a_body_over_the_limit_is_bad_request(env_server):
    base_url = env_server(max_body_bytes=64)
    with pytest.raises(BadRequestError) as raised:
        RemoteEnv(base_url, "CartPole-v1", env_kwargs={"padding": "x" * 200})
    assert (raised.value.status, raised.value.error_type) == (413, "payload_too_large")


def test_too_many_envs_is_unavailable_for_now(env_server):
    base_url = env_server(max_envs_per_key=1)
    with RemoteEnv(base_url, "CartPole-v1"), pytest.raises(UnavailableError) as raised:
        RemoteEnv(base_url, "CartPole-v1")
    assert (raised.value.status, raised.value.error_type) == (429, "too_many_envs")
    assert type(raised.value) is UnavailableError and raised.value.retry is Retry.LATER
    with RemoteEnv(base_url, "CartPole-v1") as env:  # the slot is free again
        assert env.reset(seed=0)[0].shape == (4,)


def test_a_closed_client_refuses_requests(url):
    env = RemoteEnv(url, "CartPole-v1", KEY)
    env.close()
    with pytest.raises(ClientClosedError) as raised:
        env.step(0)
    assert (raised.value.status, raised.value.error_type) == (None, "closed")


@pytest.mark.parametrize("kind", ERRORS.values(), ids=lambda kind: kind.type)
def test_every_documented_error_has_a_class_with_its_retry(kind):
    error = remote_error(kind.status, kind.type, "message")
    assert isinstance(error, RemoteEnvError) and not isinstance(error, ProtocolError)
    assert error.retry is kind.retry
    assert (error.status, error.error_type, error.message) == (kind.status, kind.type, "message")


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        # Answers outside the vocabulary (proxies, other servers) are classed by status.
        (401, "http_error", AuthError),
        (403, "http_error", AuthError),
        (404, "http_error", NotFoundError),
        (413, "http_error", BadRequestError),
        (408, "http_error", UnavailableError),
        (429, "http_error", UnavailableError),
        (502, "http_error", UnavailableError),
        (503, "http_error", UnavailableError),
        (504, "http_error", UnavailableError),
        (500, "http_error", UnavailableError),
        # A documented type with the wrong status is not trusted.
        (503, "env_error", UnavailableError),
        (422, "env_not_found", BadRequestError),
        # Statuses the protocol never answers with, and successes that are no answer.
        (418, "teapot", ProtocolError),
        (302, "http_error", ProtocolError),
        (200, "bad_response", ProtocolError),
        # No (valid) answer at all.
        (None, "connection_error", NoAnswerError),
        (None, "timeout", RemoteTimeout),
        (None, "closed", ClientClosedError),
        (None, "bad_response", ProtocolError),
    ],
)
def test_answers_outside_the_vocabulary_are_classed_by_status(status, error_type, cls):
    error = remote_error(status, error_type, "message")
    assert type(error) is cls
    assert (error.status, error.error_type) == (status, error_type)


def test_error_keeps_its_class_and_fields_when_pickled():
    import pickle

    error = pickle.loads(pickle.dumps(remote_error(422, "invalid_action", "bad")))
    assert type(error) is BadRequestError
    assert (error.status, error.error_type, error.message) == (422, "invalid_action", "bad")
    error = pickle.loads(pickle.dumps(RemoteEnvError(422, "invalid_action", "bad")))
    assert (error.status, error.error_type, error.message) == (422, "invalid_action", "bad")
