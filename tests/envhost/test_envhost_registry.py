"""Which envs a server makes: Gymnasium ids, operator registrations, never client modules."""

from __future__ import annotations

import sys
import textwrap

import gymnasium
import pytest
from wire_client import WireClient

from agentgpt.envhost.registry import EnvRegistry, load_factory
from agentgpt.service import errors


def test_lookup_finds_gymnasium_ids_and_registered_names():
    registry = EnvRegistry({"my-cartpole": "gymnasium.envs.classic_control.cartpole:CartPoleEnv"})
    assert registry.lookup("CartPole-v1").factory is None
    source = registry.lookup("my-cartpole")
    assert source.factory is gymnasium.envs.classic_control.cartpole.CartPoleEnv
    assert "my-cartpole" in registry.names() and "Pendulum-v1" in registry.names()


def test_unknown_names_suggest_near_matches():
    registry = EnvRegistry()
    with pytest.raises(errors.ApiError) as caught:
        registry.lookup("Pendulm-v1")
    assert caught.value.status == 404 and caught.value.error_type == "unknown_env"
    assert "'Pendulum-v1'" in caught.value.message
    assert registry.suggest("cartpole")[0] == "CartPole-v1"
    assert registry.suggest("zzzzzzzzzzzz") == []


def test_module_colon_names_are_refused_unless_registered():
    registry = EnvRegistry({"mine:Env-v0": gymnasium.envs.classic_control.cartpole.CartPoleEnv})
    for name in ["os:system", "gymnasium.envs.classic_control:CartPole-v1"]:
        with pytest.raises(errors.ApiError) as caught:
            registry.lookup(name)
        assert caught.value.error_type == "unknown_env"
        assert "--register" in caught.value.message
    assert registry.lookup("mine:Env-v0").is_registered


def test_remote_env_id_is_not_served():
    with pytest.raises(errors.ApiError) as caught:
        EnvRegistry().lookup("agentgpt/Remote-v0")
    assert "not served remotely" in caught.value.message


def test_bad_factories_fail_at_construction():
    with pytest.raises(ValueError, match="package.module:factory"):
        load_factory("no_colon")
    with pytest.raises(ValueError, match="cannot import"):
        load_factory("agentgpt_no_such_module_xyz:make")
    with pytest.raises(ValueError, match="no attribute"):
        load_factory("gymnasium:no_such_factory")
    with pytest.raises(ValueError, match="not callable"):
        EnvRegistry({"x": 5})


def test_operator_registered_factories_are_served(env_server):
    url = env_server(
        register={
            "short-cartpole": lambda **kw: gymnasium.make("CartPole-v1", max_episode_steps=3, **kw),
            "string-pendulum": "gymnasium.envs.classic_control.pendulum:PendulumEnv",
        }
    )
    with WireClient(url) as c:
        made = c.post("/make", {"env_name": "short-cartpole"})
        assert made.status == 200
        c.post("/reset", {"seed": 0})
        flags = [c.post("/step", {"action": 0}).body["truncated"] for _ in range(3)]
        assert flags == [False, False, True]

        pendulum = c.post("/make", {"env_name": "string-pendulum", "kwargs": {"g": 3.0}}).body
        assert pendulum["action_space"]["type"] == "Box"
        assert pendulum["observation_space"]["shape"] == [3]

        vec = c.post("/make_vec", {"env_name": "short-cartpole", "num_envs": 2})
        assert vec.status == 200 and vec.body["num_envs"] == 2
        reset = c.post("/reset", {"env_key": vec.body["env_key"], "seed": 0})
        assert len(reset.body["observation"]) == 2


def test_a_request_never_imports_a_module(env_server, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    module = tmp_path / "agentgpt_probe_module.py"
    module.write_text(
        textwrap.dedent(
            f"""
            open({str(marker)!r}, "w").write("imported")
            def make(**kwargs):
                raise RuntimeError("never")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    url = env_server()
    with WireClient(url) as c:
        for name in ["os:system", "agentgpt_probe_module:make", "agentgpt_probe_module:Env-v0"]:
            answer = c.post("/make", {"env_name": name})
            assert answer.status == 404
            assert answer.body["error"]["type"] == "unknown_env"
    assert not marker.exists()
    assert "agentgpt_probe_module" not in sys.modules
