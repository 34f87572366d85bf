"""Checkpoints load without running code from the file: real checkpoints (spaces, NumPy
arrays and random generators, the trainer's records) load, and a file that carries any
other pickled object is refused before that object is built."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from agentgpt.agent.checkpoint import (
    CHECKPOINT_FILE,
    FORMAT_VERSION,
    CheckpointError,
    TrainingRecord,
    load_agent,
    load_checkpoint,
)

RAN: list[str] = []


def _run(what: str) -> str:
    """What a malicious pickle would call; the test checks it never is."""
    RAN.append(what)
    return what


class Payload:
    def __reduce__(self):
        return (_run, ("code from the checkpoint",))


@pytest.fixture(scope="module")
def cartpole_run(tiny_run) -> Path:
    return tiny_run("CartPole-v1", total_steps=512)


def test_a_real_checkpoint_loads_with_its_spaces_and_generators(cartpole_run):
    state = load_checkpoint(cartpole_run)
    assert state["format"] == FORMAT_VERSION
    observation_space = state["policy_kwargs"]["observation_space"]
    assert isinstance(observation_space, gymnasium.spaces.Box)
    assert isinstance(observation_space.np_random, np.random.Generator)
    assert isinstance(state["policy_kwargs"]["action_space"], gymnasium.spaces.Discrete)
    from agentgpt.train.rollout import EpisodeRecord  # loaded in the trainer's process

    episodes = state["collector"]["episodes"]
    assert episodes and all(type(e) is EpisodeRecord for e in episodes)
    agent = load_agent(cartpole_run)
    observation, _ = gymnasium.make("CartPole-v1").reset(seed=0)
    actions = agent.make_actor(1).act(observation[None], np.array([True]))
    assert agent.action_space.contains(np.int64(np.asarray(actions)[0]))


def test_without_the_trainer_its_records_load_as_plain_records(cartpole_run, monkeypatch):
    monkeypatch.delitem(sys.modules, "agentgpt.train.rollout")
    episodes = load_checkpoint(cartpole_run)["collector"]["episodes"]
    assert episodes and all(type(e) is TrainingRecord for e in episodes)
    assert isinstance(episodes[0].ret, float) and isinstance(episodes[0].length, int)


def test_a_checkpoint_carrying_another_pickled_object_is_refused(cartpole_run, tmp_path):
    run = tmp_path / "tampered"
    shutil.copytree(cartpole_run, run)
    state = torch.load(run / CHECKPOINT_FILE, weights_only=False)
    state["tuned"]["note"] = Payload()
    torch.save(state, run / CHECKPOINT_FILE)
    RAN.clear()
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(run)
    with pytest.raises(CheckpointError):
        load_agent(run)
    assert RAN == []


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="unsupported checkpoint format list"):
        load_checkpoint(tmp_path)


def test_loads_in_many_threads_at_once_all_succeed(cartpole_run: Path) -> None:
    """The allowed globals live in one process-wide list; loads that overlap (a server
    loading a model while another thread does too) must not undo each other's."""
    from concurrent.futures import ThreadPoolExecutor

    from agentgpt.agent.checkpoint import load_agent

    with ThreadPoolExecutor(8) as pool:
        agents = list(pool.map(lambda _: load_agent(cartpole_run), range(32)))
    assert len(agents) == 32 and all(a.env.env_id == "CartPole-v1" for a in agents)
