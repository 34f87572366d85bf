"""The transport interface is all a session needs: a second, in-memory implementation
drives one, and the HTTP transport is one implementation among others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentgpt.remote import (
    BaseTransport,
    ClientClosedError,
    EnvError,
    EnvNotFoundError,
    HttpTransport,
    RemoteEnvError,
    Transport,
)
from agentgpt.remote.errors import remote_error
from agentgpt.remote.session import RemoteSession
from agentgpt.wire import JSON_MEDIA_TYPE, decode, encode

#: ``handler(method, path, body) -> (status, answer)``: a server as a function.
Handler = Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]]


class InMemoryTransport(BaseTransport):
    """Hands each request to ``handler`` in-process, through the JSON codec both ways."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.base_url = "memory://env-server"
        self.encoding = "json"
        self.closed = False
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, body)

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._send("GET", path, dict(params or {}))

    def close(self) -> None:
        self.closed = True

    def _send(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        request = decode(encode(body, JSON_MEDIA_TYPE), JSON_MEDIA_TYPE)
        self.requests.append((method, path, request))
        status, answer = self.handler(method, path, request)
        answer = decode(encode(answer, JSON_MEDIA_TYPE), JSON_MEDIA_TYPE)
        if status >= 300:
            error = answer["error"]
            raise remote_error(status, error["type"], error["message"])
        return answer


class CounterServer:
    """A toy env server: ``/make`` makes a counter, ``/step`` adds the action to it, an
    action of ``-1`` makes the env raise, ``/close`` forgets it."""

    def __init__(self) -> None:
        self.envs: dict[str, int] = {}

    def __call__(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict]:
        if (method, path) == ("POST", "/make"):
            env_key = f"env-{len(self.envs)}"
            self.envs[env_key] = 0
            return 200, {"env_key": env_key, "incarnation": "toy-1"}
        if (method, path) == ("GET", "/health"):
            return 200, {"status": "ok", "incarnation": "toy-1"}
        env_key = body.get("env_key")
        if env_key not in self.envs:
            return 404, _error("env_not_found", f"no env {env_key!r}")
        if path == "/close":
            del self.envs[env_key]
            return 200, {}
        if body["action"] == -1:
            return 500, _error("env_error", "ValueError: negative")
        self.envs[env_key] += body["action"]
        return 200, {"observation": self.envs[env_key]}


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


def _session(transport: BaseTransport) -> RemoteSession:
    return RemoteSession.make(
        "/make",
        transport.base_url,
        None,
        {"env_name": "Counter-v0"},
        encoding=transport.encoding,
        timeout=None,
        connect_timeout=None,
        transport=transport,
    )


def test_a_second_transport_drives_a_session_through_its_whole_life():
    server = CounterServer()
    transport = InMemoryTransport(server)
    session = _session(transport)
    assert (session.env_key, session.incarnation) == ("env-0", "toy-1")
    assert session.transport is transport
    assert session.transport.post("/step", {"env_key": "env-0", "action": 3}) == {"observation": 3}
    assert session.transport.post("/step", {"env_key": "env-0", "action": 4}) == {"observation": 7}
    assert session.transport.get("/health")["incarnation"] == "toy-1"
    with pytest.raises(EnvError) as raised:
        session.transport.post("/step", {"env_key": "env-0", "action": -1})
    assert raised.value.message == "ValueError: negative"
    session.close()
    session.close()  # idempotent
    assert session.closed and transport.closed and server.envs == {}
    assert [(m, p) for m, p, _ in transport.requests].count(("POST", "/close")) == 1
    with pytest.raises(ClientClosedError):
        transport.post("/step", {"env_key": "env-0", "action": 1})


def test_closing_a_session_whose_env_is_gone_or_whose_transport_is_closed_is_quiet():
    server = CounterServer()
    forgotten = _session(InMemoryTransport(server))
    server.envs.clear()  # as after an idle expiry or a restart
    with pytest.raises(EnvNotFoundError):
        forgotten.transport.post("/step", {"env_key": forgotten.env_key, "action": 1})
    forgotten.close()
    assert forgotten.transport.closed

    closed_first = _session(InMemoryTransport(server))
    closed_first.transport.close()
    closed_first.close()
    assert closed_first.closed


def test_a_failed_make_closes_the_transport():
    transport = InMemoryTransport(
        lambda method, path, body: (422, _error("invalid_argument", "no"))
    )
    with pytest.raises(RemoteEnvError) as raised:
        _session(transport)
    assert raised.value.error_type == "invalid_argument"
    assert transport.closed


def test_the_http_transport_is_the_default_implementation():
    assert Transport is HttpTransport and issubclass(HttpTransport, BaseTransport)
    transport = Transport("http://127.0.0.1:9/prefix/", encoding="json")
    assert isinstance(transport, BaseTransport)
    assert (transport.base_url, transport.encoding, transport.closed) == (
        "http://127.0.0.1:9/prefix",
        "json",
        False,
    )
    transport.close()
    assert transport.closed


def test_clients_run_over_a_transport_they_are_given(env_server) -> None:
    """Each client takes a ready transport; its encoding, not the client's default, is
    what the client then speaks."""
    import numpy as np

    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.remote import RemoteEnv, RemoteParallelEnv, RemoteVectorEnv

    url = env_server(register=PETTINGZOO_ENVS)
    env = RemoteEnv(url, "CartPole-v1", transport=HttpTransport(url, None, encoding="json"))
    obs, _ = env.reset(seed=0)
    assert env._session.transport.encoding == "json" and obs.shape == (4,)
    env.close()

    transport = HttpTransport(url, None, encoding="json")
    envs = RemoteVectorEnv(url, "CartPole-v1", num_envs=3, transport=transport)
    obs, _ = envs.reset(seed=0)
    obs, reward, *_ = envs.step(np.zeros(3, dtype=np.int64))
    assert obs.shape == (3, 4) and reward.tolist() == [1.0, 1.0, 1.0]
    envs.close()
    assert transport.closed

    team = RemoteParallelEnv(
        url, "agentgpt/Landmarks-v0", transport=HttpTransport(url, None, encoding="json")
    )
    observations, _ = team.reset(seed=0)
    assert set(observations) == set(team.possible_agents)
    team.close()
