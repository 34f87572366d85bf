"""The inference server's routes, in JSON and MessagePack, and the SageMaker contract."""

from __future__ import annotations

from typing import Any

import httpx
import msgpack
import numpy as np
import pytest

from agentgpt import GPTAPI, __version__, wire
from agentgpt.serve.engine import checksum

GOOD = [0.01, 0.02, 0.03, 0.04]
MEDIA = {"json": "application/json", "msgpack": "application/msgpack"}


def _call(
    url: str, method: str, path: str, body: dict[str, Any] | None, encoding: str, **params: str
) -> Any:
    media = MEDIA[encoding]
    content = None if body is None else wire.encode(body, media)
    answer = httpx.request(
        method,
        url + path,
        content=content,
        params=params,
        headers={"Content-Type": media, "Accept": media},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(media)
    return wire.decode(answer.content, media)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_every_route_in_both_encodings(cartpole_run, policy_server, encoding) -> None:
    url, _ = policy_server(cartpole_run)
    info = _call(url, "GET", "/info", None, encoding)
    assert wire.space_from_wire(info["observation_space"]).shape == (4,)
    assert info["max_input_states"] == 16 and info["num_input_states"] == 16
    assert info["model_checksum"] == checksum(cartpole_run / "checkpoint.pt")
    assert info["run_name"] == cartpole_run.name and info["version"] == __version__
    assert info["limits"]["agent_idle_timeout_s"] > 0 and "evicted" in info["limits"]["idle_agents"]

    acted = _call(
        url,
        "POST",
        "/select_action",
        {"agent_ids": [1, "b"], "observations": [GOOD, GOOD]},
        encoding,
    )
    assert len(acted["actions"]) == 2
    sampled = _call(url, "POST", "/sample_action", {"agent_ids": ["x", "y", "z"]}, encoding)
    assert all(a in (0, 1) for a in np.asarray(sampled["actions"]).tolist())

    assert _call(url, "PUT", "/control_value", {"value": 0.25}, encoding) == {"value": 0.25}
    assert (
        _call(url, "PUT", "/control_value", {"value": 0.75, "agent_ids": ["b"]}, encoding)["value"]
        == 0.75
    )
    assert _call(url, "GET", "/control_value", None, encoding) == {"value": 0.25}
    assert _call(url, "GET", "/control_value", None, encoding, agent_id="b") == {"value": 0.75}
    assert _call(url, "GET", "/control_value", None, encoding, agent_id="1") == {"value": 0.25}
    assert _call(url, "PUT", "/num_input_states", {"value": 5}, encoding) == {"value": 5}
    assert _call(url, "GET", "/num_input_states", None, encoding) == {"value": 5, "max": 16}
    # Settings belong to a session: another one starts from the defaults.
    assert _call(url, "GET", "/num_input_states", None, encoding, session="other")["value"] == 16
    assert _call(url, "GET", "/ping", None, encoding) == {"status": "ok"}


def test_invocations_carry_every_method(cartpole_run, policy_server) -> None:
    """SageMaker's ``POST /invocations``: the method in the body, JSON or x-msgpack."""
    url, _ = policy_server(cartpole_run)

    def invoke(body: dict[str, Any], media: str = "application/json") -> Any:
        answer = httpx.post(
            url + "/invocations", content=wire.encode(body, media), headers={"Content-Type": media}
        )
        assert answer.status_code == 200, answer.text
        return wire.decode(answer.content, media)

    act = {"method": "select_action", "session": "sm", "agent_ids": ["a"], "observations": [GOOD]}
    assert invoke(act)["actions"] in ([0], [1])
    packed = invoke(act | {"agent_ids": ["c"]}, "application/x-msgpack")
    assert np.asarray(packed["actions"]).shape == (1,)
    assert len(invoke({"method": "sample_action", "agent_ids": [1, 2]})["actions"]) == 2
    assert invoke({"method": "set_control_value", "session": "sm", "value": 0.5})["value"] == 0.5
    assert invoke({"method": "get_control_value", "session": "sm"})["value"] == 0.5
    assert invoke({"method": "set_num_input_states", "session": "sm", "value": 2})["value"] == 2
    assert invoke({"method": "get_num_input_states", "session": "sm"})["value"] == 2
    assert invoke({"method": "info", "session": "sm"})["num_input_states"] == 2
    raw = msgpack.unpackb(
        httpx.post(
            url + "/invocations",
            content=msgpack.packb({"method": "get_num_input_states"}),
            headers={"Content-Type": "application/x-msgpack"},
        ).content
    )
    assert raw == {"value": 16, "max": 16}


def test_sample_action_is_seeded_per_session(hybrid_run, policy_server) -> None:
    first, _ = policy_server(hybrid_run, seed=7)
    second, _ = policy_server(hybrid_run, seed=7)
    draws = []
    for url in (first, second):
        with GPTAPI(url, session="same") as api:
            draws.append([api.sample_action(["a", "b"]) for _ in range(3)])
    for one, two in zip(draws[0], draws[1], strict=True):
        np.testing.assert_array_equal(one["choice"], two["choice"])
        np.testing.assert_array_equal(one["amount"], two["amount"])
    with GPTAPI(first, session="another") as api:
        other = api.sample_action(["a", "b"])
    assert not np.array_equal(other["amount"], draws[0][0]["amount"])
    assert api.action_space.contains(
        {"amount": other["amount"][0], "choice": int(other["choice"][0])}
    )


def test_terminated_agents_start_a_new_context(cartpole_run, policy_server) -> None:
    """Ending an agent without an observation clears it; its next call starts afresh,
    as a brand-new agent's would."""
    url, _ = policy_server(cartpole_run)
    rng = np.random.default_rng(0)
    history = rng.normal(0, 0.05, size=(6, 4)).astype(np.float32)
    with GPTAPI(url) as api:
        for row in history:
            api.select_action(["old"], row[None])
        api.select_action(["other"], history[:1], terminated_agent_ids=["old"])
        probe = np.array([[0.0, 0.3, 0.02, -0.4]], np.float32)
        after_end = api.select_action(["old"], probe)
        fresh = api.select_action(["new"], probe)
    np.testing.assert_array_equal(after_end, fresh)


def test_idle_agents_are_evicted(cartpole_run, policy_server) -> None:
    import time

    url, server = policy_server(cartpole_run, agent_idle_timeout=0.2)
    with GPTAPI(url) as api:
        api.select_action(["a", "b"], np.zeros((2, 4)))
        assert api.info()["stats"]["agents_held"] == 2
        deadline = time.monotonic() + 20
        while api.info()["stats"]["agents_held"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.info()["stats"]["agents_held"] == 0
        api.select_action(["a"], np.zeros((1, 4)))  # starts a fresh context


def test_stochastic_calls_sample_from_the_policy(hybrid_run, policy_server) -> None:
    url, _ = policy_server(hybrid_run)
    obs = np.tile(np.array([0.5, 0.5, 0.5, 0.2], np.float32), (8, 1))
    with GPTAPI(url) as api:
        mode = api.select_action(list(range(8)), obs)
        sampled = api.select_action([f"s{i}" for i in range(8)], obs, deterministic=False)
    # Every agent saw the same single observation: the mode is one action, samples vary.
    assert np.allclose(mode["amount"], mode["amount"][0])
    assert len(np.unique(sampled["amount"])) > 1
    assert np.all(np.abs(sampled["amount"]) <= 1.0)
