"""The Unity adapter through the real ``mlagents_envs.UnityEnvironment`` (a real gRPC
peer) against the stand-in player (``standin.py``, a stand-in for a Unity build)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from agentgpt import wire
from agentgpt.envhost.errors import ApiError
from agentgpt.envhost.unity.adapter import UnityAdapter
from agentgpt.envhost.unity.launch import UnityLauncher, WorkerIds
from tests.unity.conftest import STANDIN

WALKER, GLIDER = "Walker?team=0", "Glider?team=0"


@pytest.fixture
def unity(standin_build, base_port) -> Iterator[Callable[..., UnityAdapter]]:
    """Factory: ``unity(mode="next_step", seed=None, build=None, **kwargs)`` -> a
    UnityAdapter on a fresh stand-in instance; all are closed at the end."""
    adapters: list[UnityAdapter] = []
    worker_ids = WorkerIds()

    def make(
        mode: str = "next_step", seed: int | None = None, build: Path | None = None, **kwargs: Any
    ) -> UnityAdapter:
        launcher = UnityLauncher(
            build or standin_build(), base_port=base_port, timeout_wait=30, worker_ids=worker_ids
        )
        launched = launcher.launch(kwargs, seed)
        try:
            adapter = UnityAdapter(launched, mode, seed)
        except BaseException:
            launched.close()  # as the env server's builder does
            raise
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        with contextlib.suppress(Exception):
            adapter.close()


def _actions(adapter: UnityAdapter, pick: Callable[[int, Any], Any] | None = None) -> list:
    """One wire action per slot that asked for a decision (``pick(slot, space)`` or 0 /
    a fixed hybrid action), ``None`` elsewhere."""
    out: list[Any] = [None] * len(adapter.agents)
    for slot in adapter._live:
        space = adapter.action_spaces[slot]
        if pick is not None:
            value = pick(slot, space)
        elif isinstance(space, spaces.Dict):
            value = {"continuous": np.array([0.25, -0.5], np.float32), "discrete": np.array([1, 2])}
        else:
            value = 0
        out[slot] = wire.value_to_wire(space, value)
    return out


def _obs(adapter: UnityAdapter, answer: dict, slot: int) -> Any:
    return wire.value_from_wire(adapter.observation_spaces[slot], answer["observation"][slot])


def _present(answer: dict) -> list[int]:
    return [i for i, o in enumerate(answer["observation"]) if o is not None]


def test_behaviours_become_slots_with_their_spaces(unity) -> None:
    adapter = unity()
    assert adapter.kind == "multi_agent"
    # Twice the agents each behaviour had after the first reset.
    assert adapter.agents == [f"{WALKER}/{k}" for k in range(6)] + [
        f"{GLIDER}/{k}" for k in range(4)
    ]
    walker_obs, glider_obs = adapter.observation_spaces[0], adapter.observation_spaces[6]
    assert walker_obs == spaces.Box(-np.inf, np.inf, (4,), np.float32)
    assert glider_obs == spaces.Dict(
        {
            "VectorSensor": spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "CameraSensor": spaces.Box(0, 255, (8, 8, 3), np.uint8),
        }
    )
    assert adapter.action_spaces[0] == spaces.Discrete(3)
    assert adapter.action_spaces[6] == spaces.Dict(
        {
            "continuous": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "discrete": spaces.MultiDiscrete([2, 3]),
        }
    )
    # Every space travels on the wire.
    assert wire.space_from_wire(adapter.observation_space_wire[6]) == glider_obs
    assert wire.space_from_wire(adapter.action_space_wire[6]) == adapter.action_spaces[6]
    assert set(adapter.metadata_wire["unity"]["behaviors"]) == {WALKER, GLIDER}


def test_max_agents_and_float_images_are_options(unity) -> None:
    adapter = unity(max_agents={WALKER: 5, GLIDER: 2}, visual="float32")
    assert len(adapter.agents) == 7
    camera = adapter.observation_spaces[5]["CameraSensor"]
    assert camera == spaces.Box(0.0, 1.0, (8, 8, 3), np.float32)


def test_max_agents_must_name_behaviours_of_the_scene(unity) -> None:
    with pytest.raises(ApiError) as caught:
        unity(max_agents={"Runner?team=0": 4})
    assert caught.value.error_type == "invalid_argument"
    assert "Runner?team=0" in caught.value.message and WALKER in caught.value.message


def test_decision_and_terminal_steps_are_merged(unity) -> None:
    """The stand-in's Walker agents end at different times, one interrupted, one joining
    late, one coming back a step after its end; the Glider pair ends with a group
    reward. Every end is reported once, in its agent's slot, and every new episode
    starts in a slot in the same answer."""
    adapter = unity()
    first = adapter.reset(None, None)
    assert _present(first) == [0, 1, 2, 6, 7]
    assert [first["info"][i]["agent_id"] for i in (0, 1, 2, 6, 7)] == [0, 1, 2, 10, 11]
    assert first["info"][0]["action_mask"].tolist() == [True, True, False]  # action 2 masked
    assert first["info"][1]["action_mask"].tolist() == [True, True, True]
    answers = [adapter.step(_actions(adapter)) for _ in range(10)]

    # Step 3: agent 3 joins and takes the next free slot.
    assert answers[1]["observation"][3] is None
    assert answers[2]["info"][3]["agent_id"] == 3
    assert answers[2]["terminated"][3] is False

    # Step 4: agent 0 reaches its goal (terminal observation, reward 0.1 + 1) and asks
    # for its next decision in the same step: that episode starts in slot 4 at once.
    end = answers[3]
    assert (end["terminated"][0], end["truncated"][0]) == (True, False)
    np.testing.assert_allclose(_obs(adapter, end, 0), [0.4, 0.0, 0.0, 1.0])
    assert end["reward"][0] == pytest.approx(1.1)
    assert end["info"][4]["agent_id"] == 0
    np.testing.assert_allclose(_obs(adapter, end, 4), [0.0, 0.0, -1.0, 1.0])
    assert (end["reward"][4], end["terminated"][4], end["truncated"][4]) == (0.0, False, False)
    assert answers[4]["observation"][0] is None  # the ended slot is free again

    # Step 5: both gliders end together, with their group reward kept apart.
    gliders = answers[4]
    for slot in (6, 7):
        assert gliders["terminated"][slot] is True
        assert gliders["info"][slot]["group_id"] == 1
        assert gliders["info"][slot]["group_reward"] == pytest.approx(0.5)
    assert [gliders["info"][slot]["agent_id"] for slot in (8, 9)] == [10, 11]

    # Step 6: agent 1 hits its step limit: interrupted, so truncated.
    assert (answers[5]["terminated"][1], answers[5]["truncated"][1]) == (False, True)
    assert answers[5]["info"][0]["agent_id"] == 1  # its next episode, in the free slot 0

    # Step 9: agent 2 ends and asks for no decision; a step later it is back, in its slot.
    assert answers[8]["terminated"][2] is True
    assert answers[9]["info"][2]["agent_id"] == 2
    assert answers[9]["terminated"][2] is False
    np.testing.assert_allclose(_obs(adapter, answers[9], 2), [0.0, 2.0, -1.0, 1.0])

    # A slot carries one agent at a time and every reported slot has all its fields.
    for answer in answers:
        for i, obs in enumerate(answer["observation"]):
            fields = [answer[k][i] for k in ("reward", "terminated", "truncated", "info")]
            assert all(f is None for f in fields) if obs is None else None not in fields


def test_hybrid_actions_and_camera_frames_round_trip(unity) -> None:
    adapter = unity()
    adapter.reset(None, None)
    answer = adapter.step(_actions(adapter))
    for slot, index in ((6, 0), (7, 1)):
        obs = _obs(adapter, answer, slot)
        np.testing.assert_allclose(obs["VectorSensor"], [0.25, -0.5, 12.0])
        frame = obs["CameraSensor"]
        assert frame.dtype == np.uint8 and frame.shape == (8, 8, 3)
        assert (frame[..., 0] == 20).all() and (frame[..., 1] == 100 * index).all()
    np.testing.assert_allclose(_obs(adapter, answer, 0), [0.1, 0.0, 0.0, 1.0])


def test_disabled_mode_keeps_pettingzoo_episodes(unity) -> None:
    """In ``disabled`` mode a finished slot is never used again before ``/reset``; new
    episodes take unused slots, and the episode is over when no slot asks."""
    adapter = unity("disabled", max_agents={WALKER: 4, GLIDER: 2})
    adapter.reset(None, None)
    finished: set[int] = set()
    for _ in range(40):
        answer = adapter.step(_actions(adapter))
        for slot in _present(answer):
            assert slot not in finished, "a finished slot came back"
            if answer["terminated"][slot] or answer["truncated"][slot]:
                finished.add(slot)
        if not adapter._live:
            break
    else:
        pytest.fail("the episode never ended")
    with pytest.raises(ApiError) as caught:
        adapter.step(_actions(adapter))
    assert caught.value.error_type == "reset_needed"
    assert _present(adapter.reset(None, None)) == [0, 1, 2, 4, 5]


def test_wrong_actions_get_clear_errors(unity) -> None:
    adapter = unity()
    adapter.reset(None, None)
    actions = _actions(adapter)
    wrong_branch = list(actions)
    wrong_branch[0] = 3  # Walker's branch has 3 actions
    with pytest.raises(ApiError) as caught:
        adapter.step(wrong_branch)
    assert caught.value.error_type == "invalid_action"
    assert "Walker?team=0/0" in caught.value.message and "Discrete(3)" in caught.value.message
    wrong_hybrid = list(actions)
    wrong_hybrid[6] = {"continuous": [0.0, 0.0], "discrete": [2, 0]}  # branch 0 has 2
    with pytest.raises(ApiError) as caught:
        adapter.step(wrong_hybrid)
    assert caught.value.error_type == "invalid_action"
    assert "MultiDiscrete([2 3])" in caught.value.message
    missing = list(actions)
    missing[1] = None
    with pytest.raises(ApiError) as caught:
        adapter.step(missing)
    assert "asked for a decision" in caught.value.message
    with pytest.raises(ApiError) as caught:
        adapter.step(actions[:3])
    assert "list of 10 entries" in caught.value.message
    assert _present(adapter.step(actions)) == [0, 1, 2, 6, 7]  # still usable


def test_side_channels_set_engine_and_parameters(unity, standin_build, tmp_path: Path) -> None:
    record = tmp_path / "player.json"
    adapter = unity(
        build=standin_build(record=record),
        engine={"time_scale": 20, "quality_level": 1, "width": 64, "height": 48},
        parameters={"glider_episode_length": 2},
    )
    received = json.loads(record.read_text())
    assert received["engine"] == {
        "width": 64,
        "height": 48,
        "quality_level": 1,
        "time_scale": 20.0,
    }
    assert received["parameters"] == {"glider_episode_length": 2.0}
    adapter.reset(None, None)
    adapter.step(_actions(adapter))
    assert adapter.step(_actions(adapter))["terminated"][6] is True  # episodes of 2 steps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 2}, "not Unity options"),
        ({"engine": {"time_scale": "fast"}}, "must be a number"),
        ({"engine": {"warp": 1}}, "not an engine setting"),
        ({"engine": {"width": 64}}, "go together"),
        ({"max_agents": 0}, "positive integer"),
        ({"visual": "rgb"}, "visual"),
    ],
)
def test_bad_options_are_refused_before_unity_starts(
    kwargs: dict, message: str, standin_build, base_port
) -> None:
    launcher = UnityLauncher(standin_build(), base_port=base_port, worker_ids=WorkerIds())
    with pytest.raises(ApiError) as caught:
        launcher.launch(kwargs)
    assert caught.value.error_type == "invalid_argument"
    assert message in caught.value.message


def test_a_unity_process_that_dies_fails_the_env_clearly(unity, standin_build) -> None:
    adapter = unity(build=standin_build(die_after=3))
    adapter.reset(None, None)
    adapter.step(_actions(adapter))
    adapter.step(_actions(adapter))
    with pytest.raises(ApiError) as caught:
        adapter.step(_actions(adapter))
    assert caught.value.error_type == "env_error"
    assert "UnityEnvironmentException" in caught.value.message
    assert "shut down with return code 3" in caught.value.message
    with pytest.raises(ApiError) as caught:
        adapter.step(_actions(adapter))
    assert "failed earlier" in caught.value.message and "make it again" in caught.value.message
    adapter.close()  # closing a dead instance is fine


def test_instances_get_their_own_ports_and_skip_taken_ones(unity, base_port) -> None:
    """Several instances side by side: worker ids 0, 1, ...; a port another process holds
    is skipped."""
    blocker = socket.socket()
    blocker.bind(("localhost", base_port + 1))
    blocker.listen()
    try:
        first, second = unity(), unity()
        assert first.metadata_wire["unity"]["port"] == base_port
        assert second.metadata_wire["unity"]["port"] == base_port + 2
        for adapter in (first, second):
            assert _present(adapter.reset(None, None)) == [0, 1, 2, 6, 7]
        first.close()
        third = unity()  # the freed worker id is used again
        assert third.metadata_wire["unity"]["port"] == base_port
    finally:
        blocker.close()


def test_the_editor_port_in_use_is_a_clear_error(base_port) -> None:
    blocker = socket.socket()
    blocker.bind(("localhost", base_port))
    blocker.listen()
    try:
        launcher = UnityLauncher(None, base_port=base_port, worker_ids=WorkerIds())
        with pytest.raises(ApiError) as caught:
            launcher.launch({})
        assert caught.value.error_type == "too_many_envs"
        assert f"port {base_port} is in use" in caught.value.message
    finally:
        blocker.close()


def test_a_build_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        UnityLauncher(tmp_path / "Missing.x86_64")
    folder = tmp_path / "Build"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        UnityLauncher(folder)
    not_executable = tmp_path / "Game.x86_64"
    not_executable.write_text("")
    with pytest.raises(ValueError, match="not executable"):
        UnityLauncher(not_executable)


def test_more_agents_than_slots_is_a_clear_error(unity) -> None:
    adapter = unity(max_agents={WALKER: 3})  # agent 3 joins at step 3: no slot left
    adapter.reset(None, None)
    adapter.step(_actions(adapter))
    adapter.step(_actions(adapter))
    with pytest.raises(ApiError) as caught:
        adapter.step(_actions(adapter))
    assert caught.value.error_type == "env_error"
    assert "more agents needing a decision than its 3 slots" in caught.value.message
    assert "max_agents" in caught.value.message


def test_the_editor_connection_serves_one_env(base_port) -> None:
    """``--unity-editor``: the server listens on the editor's port and the scene that is
    playing connects (here the stand-in, started first, as if Play had been pressed)."""
    player = subprocess.Popen(
        [sys.executable, str(STANDIN), "--scene", "coop", "--mlagents-port", str(base_port)]
    )
    launcher = UnityLauncher(None, base_port=base_port, timeout_wait=30, worker_ids=WorkerIds())
    try:
        adapter = UnityAdapter(launcher.launch({"max_agents": 2}), "next_step", None)
        try:
            assert adapter.agents == [
                "Red?team=0/0",
                "Red?team=0/1",
                "Blue?team=0/0",
                "Blue?team=0/1",
            ]
            assert adapter.metadata_wire["unity"]["port"] == base_port
            assert _present(adapter.reset(None, None)) == [0, 1, 2, 3]
            with pytest.raises(ApiError) as caught:
                launcher.launch({})
            assert caught.value.error_type == "too_many_envs"
            assert "one env at a time" in caught.value.message
        finally:
            adapter.close()
        assert player.wait(timeout=30) == 0  # the editor's scene stops playing on close
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
