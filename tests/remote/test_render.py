"""Rendering remote envs: every client's ``render()`` gives what the local env's gives."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import gymnasium
import imageio
import numpy as np
import pytest
from gymnasium.wrappers import RenderCollection
from pettingzoo.classic import rps_v2
from render_envs import UnrenderableEnv

from agentgpt.envhost import EnvServer, run_server_in_thread
from agentgpt.protocol import routes
from agentgpt.protocol.requests import render_request
from agentgpt.remote import (
    BadRequestError,
    EnvError,
    EnvNotFoundError,
    RemoteEnv,
    RemoteParallelEnv,
    RemoteVectorEnv,
    Transport,
)

KEY = "render-key"
OTHER_KEY = "render-other-key"
ENCODINGS = ["msgpack", "json"]
TAXI = next((name for name in ("Taxi-v3", "Taxi-v4") if name in gymnasium.registry), "Taxi-v4")
ACTIONS = [1, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def url():
    server = EnvServer(
        api_keys=[KEY, OTHER_KEY],
        register={"Unrenderable-v0": UnrenderableEnv, "rps": rps_v2.parallel_env},
    )
    with run_server_in_thread(server) as base_url:
        yield base_url


def _play(env: Any, seed: int, actions: list[Any]) -> None:
    env.reset(seed=seed)
    for action in actions:
        env.step(action)


def _assert_frame(frame: Any, expected: np.ndarray) -> None:
    assert type(frame) is np.ndarray and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[-1] == 3
    np.testing.assert_array_equal(frame, expected)


# ----------------------------------------------------------------------------- single envs


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_rgb_array_frame_equals_the_local_envs(url, encoding):
    local = gymnasium.make("CartPole-v1", render_mode="rgb_array")
    with RemoteEnv(url, "CartPole-v1", KEY, render_mode="rgb_array", encoding=encoding) as env:
        for env_ in (env, local):
            _play(env_, 7, ACTIONS)
        _assert_frame(env.render(), local.render())
        assert env.render_mode == "rgb_array"
    local.close()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("env_name", [TAXI, "FrozenLake-v1"])
def test_ansi_text_equals_the_local_envs(url, env_name, encoding):
    local = gymnasium.make(env_name, render_mode="ansi")
    with RemoteEnv(url, env_name, KEY, render_mode="ansi", encoding=encoding) as env:
        for env_ in (env, local):
            _play(env_, 3, [1, 2, 0])
        text = env.render()
        assert type(text) is str and text == local.render()
    local.close()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_env_without_a_render_mode_renders_none(url, encoding):
    with RemoteEnv(url, "CartPole-v1", KEY, encoding=encoding) as env:
        env.reset(seed=1)
        assert env.render_mode is None and env.render() is None


def test_metadata_carries_the_server_envs_render_settings(url):
    local = gymnasium.make("CartPole-v1")
    with RemoteEnv(url, "CartPole-v1", KEY, render_mode="rgb_array") as env:
        assert env.metadata["render_modes"] == local.metadata["render_modes"]
        assert env.metadata["render_fps"] == local.metadata["render_fps"]
    with RemoteEnv(url, TAXI, KEY) as env:
        assert env.metadata["render_modes"] == gymnasium.make(TAXI).metadata["render_modes"]
    local.close()


def test_render_collection_records_the_local_envs_frames_and_they_make_a_video(url, tmp_path):
    local = RenderCollection(gymnasium.make("CartPole-v1", render_mode="rgb_array"))
    remote = RenderCollection(RemoteEnv(url, "CartPole-v1", KEY, render_mode="rgb_array"))
    try:
        for env in (remote, local):
            _play(env, 11, ACTIONS)
        frames, local_frames = remote.render(), local.render()
        assert remote.render_mode == "rgb_array_list"
        assert len(frames) == len(ACTIONS) + 1 == len(local_frames)
        for frame, local_frame in zip(frames, local_frames, strict=True):
            _assert_frame(frame, local_frame)
    finally:
        remote.close()
        local.close()
    # The frames are what a video writer takes: a real mp4 comes out.
    video = tmp_path / "cartpole.mp4"
    imageio.mimwrite(video, frames, fps=remote.metadata["render_fps"], macro_block_size=8)
    with imageio.get_reader(video) as reader:
        assert reader.count_frames() == len(frames)
        assert reader.get_data(0).shape == frames[0].shape


def test_gymnasium_make_accepts_render_modes_for_the_remote_env(url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "render_mode not in render_modes" warning
        env = gymnasium.make(
            "agentgpt/Remote-v0",
            url=url,
            env_name="CartPole-v1",
            api_key=KEY,
            render_mode="rgb_array_list",
        )
    local = gymnasium.make("CartPole-v1", render_mode="rgb_array_list")
    try:
        assert env.unwrapped.render_mode == "rgb_array"  # the list is collected here
        for env_ in (env, local):
            _play(env_, 5, ACTIONS[:2])
        frames, local_frames = env.render(), local.render()
        assert len(frames) == 3 == len(local_frames)
        for frame, local_frame in zip(frames, local_frames, strict=True):
            _assert_frame(frame, local_frame)
    finally:
        env.close()
        local.close()


def test_human_rendering_is_refused_at_make(url):
    with pytest.raises(BadRequestError, match="no screen"):
        RemoteEnv(url, "CartPole-v1", KEY, render_mode="human")


# ----------------------------------------------------------------------------- errors


def test_another_keys_env_is_not_found(url):
    with (
        RemoteEnv(url, "CartPole-v1", KEY, render_mode="rgb_array") as mine,
        contextlib.closing(Transport(url, OTHER_KEY)) as other,
    ):
        with pytest.raises(EnvNotFoundError) as caught:
            other.post(routes.RENDER, render_request(mine.env_key))
        assert caught.value.error_type == "env_not_found" and caught.value.status == 404
        mine.reset(seed=0)
        assert mine.render().shape == (400, 600, 3)  # still the owner's to render


def test_a_render_that_raises_is_an_env_error_and_the_env_stays_usable(url):
    with RemoteEnv(url, "Unrenderable-v0", KEY, render_mode="rgb_array") as env:
        env.reset(seed=0)
        with pytest.raises(EnvError) as caught:
            env.render()
        assert caught.value.error_type == "env_error" and caught.value.status == 500
        assert caught.value.message == "RuntimeError: this env has no camera"
        assert env.step(0)[0] == 1


# ----------------------------------------------------------------------------- vector envs


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_vector_env_renders_the_local_frames_one_per_sub_env(url, encoding):
    local = gymnasium.make_vec("CartPole-v1", 3, vectorization_mode="sync", render_mode="rgb_array")
    with RemoteVectorEnv(
        url, "CartPole-v1", 3, KEY, render_mode="rgb_array", encoding=encoding
    ) as env:
        for env_ in (env, local):
            _play(env_, 4, [np.array([0, 1, 1]), np.array([1, 1, 0])])
        frames, local_frames = env.render(), local.render()
        assert type(frames) is type(local_frames) is tuple and len(frames) == 3
        for frame, local_frame in zip(frames, local_frames, strict=True):
            _assert_frame(frame, local_frame)
        assert env.render_mode == "rgb_array"
        assert env.metadata["render_modes"] == local.metadata["render_modes"]
    local.close()


def test_a_vector_env_without_a_render_mode_renders_none(url):
    with RemoteVectorEnv(url, "CartPole-v1", 2, KEY) as env:
        env.reset(seed=0)
        assert env.render() is None


# ----------------------------------------------------------------------------- PettingZoo


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_parallel_env_renders_the_local_frame(url, encoding):
    local = rps_v2.parallel_env(render_mode="rgb_array")
    with RemoteParallelEnv(url, "rps", KEY, render_mode="rgb_array", encoding=encoding) as env:
        for env_ in (env, local):
            env_.reset(seed=2)
            env_.step({agent: 1 for agent in env_.possible_agents})
        _assert_frame(env.render(), local.render())
        assert env.metadata["render_modes"] == local.metadata["render_modes"]
        assert env.metadata["name"] == local.metadata["name"]
    local.close()
