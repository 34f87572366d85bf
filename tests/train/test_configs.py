"""The run's configs: the flat Hyperparameters view and its four parts."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from agentgpt.agent.checkpoint import FORMAT_VERSION, load_agent
from agentgpt.agent.config import ModelConfig
from agentgpt.core.env_spec import EnvSpec
from agentgpt.train.config import PPOConfig, RunConfig
from agentgpt.train.hyperparameters import Hyperparameters

PARTS = (EnvSpec, ModelConfig, PPOConfig, RunConfig)


def _changed(value):
    """A different valid value of the same type as ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 0.125
    if isinstance(value, dict):
        return {"k": 1}
    return "x"


def test_every_field_belongs_to_exactly_one_part() -> None:
    flat = set(Hyperparameters.field_names())
    owners = [{f.name for f in dataclasses.fields(part)} for part in PARTS]
    assert set().union(*owners) == flat
    assert sum(len(o) for o in owners) == len(flat)  # no field in two parts
    # The flat defaults are the parts' defaults.
    assert Hyperparameters().to_dict() == {
        key: value for part in PARTS for key, value in part().to_dict().items()
    }


@pytest.mark.parametrize("name", Hyperparameters.field_names())
def test_flat_to_parts_and_back_keeps_every_field(name: str) -> None:
    base = Hyperparameters(num_input_states=8, max_input_states=16, rollout_steps=64)
    special = {
        "vectorization_mode": "async",
        "run_name": "named",
        "train_window": 32,
        "window_stride": 16,
        "num_input_states": 4,
        "max_input_states": 17,
        "rollout_steps": 128,
    }
    value = special.get(name, _changed(getattr(base, name)))
    hp = base.replace(**{name: value})
    again = Hyperparameters.from_parts(hp.env, hp.model, hp.ppo, hp.run)
    assert again == hp and getattr(again, name) == value
    assert Hyperparameters.from_dict(hp.to_dict()) == hp


def test_parts_carry_the_values(tmp_path: Path) -> None:
    hp = Hyperparameters(env_id="Pendulum-v1", env_kwargs={"g": 9.0}, d_model=32, gamma=0.9)
    assert hp.env == EnvSpec("Pendulum-v1", {"g": 9.0})
    assert hp.model.d_model == 32 and hp.ppo.gamma == 0.9 and hp.run.seed == 1
    assert hp.window == hp.ppo.window(hp.num_input_states) == 32
    path = tmp_path / "hp.yaml"
    hp.to_yaml(path)
    assert Hyperparameters.from_yaml(path) == hp
    assert list(yaml.safe_load(path.read_text()))[:2] == ["env_id", "env_kwargs"]


def test_validation_lives_in_the_parts() -> None:
    with pytest.raises(ValueError, match="num_input_states"):
        Hyperparameters(num_input_states=32, max_input_states=16)
    with pytest.raises(ValueError, match="rollout_steps"):
        Hyperparameters(rollout_steps=48)
    with pytest.raises(ValueError, match="vectorization_mode"):
        Hyperparameters(vectorization_mode="threads")
    with pytest.raises(ValueError, match="eval_episodes"):
        RunConfig(eval_episodes=0)
    with pytest.raises(ValueError, match="unknown"):
        Hyperparameters.from_dict({"learning_rat": 1.0})


def test_an_old_checkpoint_loads(tmp_path: Path, tiny_run) -> None:
    """A format-1 checkpoint (written before eval_every and eval_episodes existed)
    still loads as an agent and as hyperparameters."""
    run = tiny_run("CartPole-v1", total_steps=256)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["format"] == FORMAT_VERSION
    old = dict(state, format=1, envs=None, collector=None)
    for name in ("eval_every", "eval_episodes"):
        del old["hyperparameters"][name]
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "checkpoint.pt")
    agent = load_agent(tmp_path / "old")
    assert agent.env == EnvSpec("CartPole-v1") and agent.model == ModelConfig()
    assert Hyperparameters.from_dict(old["hyperparameters"]).eval_every == 0


def test_agent_does_not_need_the_trainer() -> None:
    code = (
        "import sys, agentgpt.agent.checkpoint, agentgpt.agent.evaluate; "
        "assert not any(m.startswith('agentgpt.train') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
