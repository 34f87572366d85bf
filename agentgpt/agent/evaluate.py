"""Evaluate a trained agent: the mean and spread of its return over N episodes, and a video.

Episodes are seeded one by one (episode ``i`` resets with ``seed + i``), so a result does
not depend on how many envs run in parallel, and two evaluations with the same seed play
the same episodes. Several envs are stepped side by side so that one batched forward pass
serves them all; with ``video`` a single env plays every episode in order and each frame
it renders is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from agentgpt.core.registration import register_namespace

if TYPE_CHECKING:
    from agentgpt.agent.agent import Agent

#: Envs stepped side by side when no video is recorded.
DEFAULT_EVAL_ENVS = 8
VIDEO_SUFFIXES = (".mp4", ".gif")


@dataclass
class EvalResult:
    """Returns of the evaluation episodes, in episode (seed) order."""

    mean: float
    std: float
    returns: list[float]
    lengths: list[int] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.returns)


def _load(run_dir_or_agent: str | Path | Agent) -> Agent:
    from agentgpt.agent.agent import Agent
    from agentgpt.agent.checkpoint import load_agent

    if isinstance(run_dir_or_agent, Agent):
        return run_dir_or_agent
    return load_agent(run_dir_or_agent)


def make_eval_env(agent: Agent, render_mode: str | None = None, **overrides: Any) -> gymnasium.Env:
    """One env like those the agent was trained on (same id and constructor kwargs)."""
    spec = agent.env
    register_namespace(spec.env_id)
    kwargs = {**spec.env_kwargs, **overrides}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return gymnasium.make(spec.env_id, **kwargs)


class VideoWriter:
    """Streams ``rgb_array`` frames to an ``.mp4`` (ffmpeg) or ``.gif`` file via imageio."""

    def __init__(self, path: str | Path, fps: float) -> None:
        import imageio

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"video path must end with .mp4 or .gif, got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        if suffix == ".mp4":
            # Frames are padded to even sizes (what H.264 needs) rather than resized.
            self._writer = imageio.get_writer(self.path, fps=fps, macro_block_size=2)
            self._pad_even = True
        else:
            self._writer = imageio.get_writer(self.path, mode="I", duration=1000.0 / fps, loop=0)
            self._pad_even = False

    def append(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise ValueError(f"expected an HxWx3 rgb_array frame, got shape {frame.shape}")
        frame = frame[..., :3]
        if self._pad_even:
            pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()


@contextmanager
def _video(path: str | Path | None, env: gymnasium.Env) -> Iterator[VideoWriter | None]:
    if path is None:
        yield None
        return
    fps = float(env.metadata.get("render_fps") or 30)
    writer = VideoWriter(path, fps)
    try:
        yield writer
    finally:
        writer.close()


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread for the duration.

    Acting is a stream of tiny forward passes; splitting each over threads costs more in
    synchronization than it saves, and on a busy machine far more.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _action_masks(infos: list[dict[str, Any]], num_logits: int) -> np.ndarray | None:
    """Stack per-env ``info["action_mask"]`` (all-allowed where an env gives none)."""
    if not any("action_mask" in info for info in infos):
        return None
    masks = np.ones((len(infos), num_logits), dtype=bool)
    for i, info in enumerate(infos):
        if "action_mask" in info:
            masks[i] = np.asarray(info["action_mask"], dtype=bool).reshape(-1)
    return masks


def evaluate(
    run_dir_or_agent: str | Path | Agent,
    episodes: int = 20,
    seed: int = 0,
    control: float = 1.0,
    num_input_states: int | None = None,
    deterministic: bool = True,
    video: str | Path | None = None,
    num_envs: int | None = None,
    make_env: Callable[[str | None], gymnasium.Env] | None = None,
) -> EvalResult:
    """Play ``episodes`` episodes with a trained agent and summarize their returns.

    ``run_dir_or_agent`` is a run directory (loaded with ``load_agent``) or an ``Agent``.
    ``control`` (0 random .. 1 full skill), ``num_input_states`` (context K, default the
    trained one) and ``deterministic`` are passed to the agent's actor. ``video`` (a path
    ending in ``.mp4`` or ``.gif``) renders every episode with ``render_mode="rgb_array"``:
    the frame after each reset and after each step. ``num_envs`` (default up to 8, 1 with
    a video) only changes speed, never the result. ``make_env(render_mode)`` builds each
    env instead of :func:`make_eval_env` (for example a ``RemoteEnv`` on an env server,
    which renders there: a video then shows the server's frames).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if video is not None and Path(video).suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"video path must end with .mp4 or .gif, got {video}")
    agent = _load(run_dir_or_agent)
    if video is not None:
        num_envs = 1
    n = max(1, min(num_envs or DEFAULT_EVAL_ENVS, episodes))
    render_mode = "rgb_array" if video is not None else None
    if make_env is None:

        def make_env(render_mode: str | None) -> gymnasium.Env:
            return make_eval_env(agent, render_mode=render_mode)

    envs = []
    try:
        for _ in range(n):
            envs.append(make_env(render_mode))
    except BaseException:
        for env in envs:
            env.close()
        raise
    try:
        with _single_thread(), _video(video, envs[0]) as writer:
            returns, lengths = _play(
                agent, envs, episodes, seed, control, num_input_states, deterministic, writer
            )
    finally:
        for env in envs:
            env.close()
    values = np.asarray(returns, dtype=np.float64)
    return EvalResult(float(values.mean()), float(values.std()), returns, lengths)


def _play(
    agent: Agent,
    envs: list[gymnasium.Env],
    episodes: int,
    seed: int,
    control: float,
    num_input_states: int | None,
    deterministic: bool,
    writer: VideoWriter | None,
) -> tuple[list[float], list[int]]:
    n = len(envs)
    obs_space, act_space = agent.observation_space, agent.action_space
    batch_act_space = batch_space(act_space, n)
    batched = create_empty_array(obs_space, n)
    actor = agent.make_actor(
        n,
        num_input_states=num_input_states,
        control=control,
        deterministic=deterministic,
        seed=seed,
    )
    num_logits = agent.policy.action_codec.num_logits

    returns: list[float] = [0.0] * episodes
    lengths: list[int] = [0] * episodes
    next_episode = 0
    current: list[int | None] = [None] * n  # episode index each env is playing
    observations: list[Any] = [None] * n
    infos: list[dict[str, Any]] = [{} for _ in range(n)]
    starts = np.zeros(n, dtype=bool)

    def start(i: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            current[i] = None
            return
        current[i] = next_episode
        observations[i], infos[i] = envs[i].reset(seed=seed + next_episode)
        starts[i] = True
        next_episode += 1
        if writer is not None and i == 0:
            writer.append(envs[0].render())

    for i in range(n):
        start(i)
    while any(e is not None for e in current):
        batched = concatenate(obs_space, observations, batched)
        actions = actor.act(batched, starts.copy(), _action_masks(infos, num_logits))
        starts[:] = False
        for i, action in enumerate(iterate(batch_act_space, actions)):
            episode = current[i]
            if episode is None:
                continue  # this env has played its share; its slot in the batch is idle
            obs, reward, terminated, truncated, info = envs[i].step(action)
            returns[episode] += float(reward)
            lengths[episode] += 1
            observations[i], infos[i] = obs, info
            if writer is not None and i == 0:
                writer.append(envs[0].render())
            if terminated or truncated:
                start(i)
    return returns, lengths
