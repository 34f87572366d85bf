"""The training loop end to end on tiny budgets: run dirs, resume, Ctrl-C, CLI, agents."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from agentgpt.agent.checkpoint import load_agent, load_checkpoint
from agentgpt.api import AgentGPT
from agentgpt.cli import train as commands
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.reporting import METRIC_COLUMNS
from agentgpt.train.run import TrainingInterrupted, train


def tiny(tmp_path: Path, **changes) -> Hyperparameters:
    """CartPole with 2 envs, 16-step rollouts and K=4: 32 steps per update."""
    base = dict(
        env_id="CartPole-v1",
        num_envs=2,
        rollout_steps=16,
        num_input_states=4,
        max_input_states=4,
        total_steps=32 * 4,
        epochs=2,
        num_minibatches=2,
        d_model=16,
        num_heads=2,
        num_layers=1,
        runs_dir=str(tmp_path),
        torch_threads=1,
        checkpoint_every=1,
    )
    return Hyperparameters(**{**base, **changes})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_holds_everything(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, run_name="basic"), show_progress=False)
    run = tmp_path / "basic"
    assert result.run_dir == run and result.global_step == 128 and result.updates == 4
    rows = read_csv(run / "metrics.csv")
    assert [int(r["global_step"]) for r in rows] == [32, 64, 96, 128]
    assert list(rows[0]) == METRIC_COLUMNS
    assert not any("time" in c or "per_sec" in c for c in rows[0])  # wall-clock lives elsewhere
    assert all(np.isfinite(float(r["value_loss"])) for r in rows)
    assert len(read_csv(run / "timing.csv")) == 4
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    saved = Hyperparameters.from_yaml(run / "hyperparameters.yaml")
    assert saved == tiny(tmp_path, run_name="basic")
    tuned = yaml.safe_load((run / "tuned.yaml").read_text())
    state = load_checkpoint(run)
    assert tuned["ent_coef"] == state["tuned"]["ent_coef"]
    assert tuned["learning_rate"] == pytest.approx(5e-4 * (1 - 3 / 4))  # annealed
    np.testing.assert_allclose(tuned["obs_mean"], state["obs_normalizer"]["mean"])
    assert state["progress"] == {"update": 4, "global_step": 128}
    assert result.metrics["global_step"] == 128
    with pytest.raises(FileExistsError):
        train(tiny(tmp_path, run_name="basic"), show_progress=False)


class InterruptAfter(gymnasium.Wrapper):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the ``steps``-th step of all
    instances together; otherwise a transparent wrapper."""

    counter = [0]

    def __init__(self, env: gymnasium.Env, steps: int) -> None:
        super().__init__(env)
        self.steps = steps

    def step(self, action):
        self.counter[0] += 1
        if self.counter[0] == self.steps:
            raise KeyboardInterrupt
        return self.env.step(action)


def _interrupting_cartpole(interrupt_at: int = -1) -> gymnasium.Env:
    return InterruptAfter(gymnasium.make("CartPole-v1"), steps=interrupt_at)


gymnasium.register("test/InterruptingCartPole-v0", entry_point=_interrupting_cartpole)


def test_ctrl_c_then_resume_continues_exactly(tmp_path: Path) -> None:
    env_id = "test/InterruptingCartPole-v0"
    straight = train(tiny(tmp_path, env_id=env_id, run_name="straight"), show_progress=False)
    InterruptAfter.counter[0] = 0
    # 2 envs x 16 steps per update: the 3rd update is interrupted mid-rollout.
    hp = tiny(
        tmp_path,
        env_id=env_id,
        env_kwargs={"interrupt_at": 80},
        run_name="split",
        checkpoint_every=100,
    )
    with pytest.raises(TrainingInterrupted) as stop:
        train(hp, show_progress=False)
    assert stop.value.run_dir == tmp_path / "split"
    assert stop.value.global_step == 64  # the step the saved checkpoint continues from
    assert load_checkpoint(tmp_path / "split")["progress"] == {"update": 2, "global_step": 64}
    resumed = train(hp, resume=True, show_progress=False)
    assert resumed.global_step == straight.global_step == 128
    # Same seed, same envs: the resumed run is indistinguishable from the straight one.
    a = (straight.run_dir / "metrics.csv").read_text()
    b = (resumed.run_dir / "metrics.csv").read_text()
    assert a == b
    sa, sb = load_checkpoint(straight.run_dir), load_checkpoint(resumed.run_dir)
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key


def test_ctrl_c_with_unpicklable_envs_resumes_on_fresh_envs(tmp_path: Path) -> None:
    InterruptAfter.counter[0] = 0
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: InterruptAfter(gymnasium.make("CartPole-v1"), steps=80)] * 2
    )
    hp = tiny(tmp_path, run_name="stopped", checkpoint_every=100)
    with pytest.raises(TrainingInterrupted):
        train(hp, envs=envs, show_progress=False)
    state = load_checkpoint(tmp_path / "stopped")
    assert state["progress"] == {"update": 2, "global_step": 64}
    assert state["envs"] is None  # envs given by the caller are never pickled
    result = train(hp, resume=True, show_progress=False)
    assert result.global_step == 128
    steps = [int(r["global_step"]) for r in read_csv(result.run_dir / "metrics.csv")]
    assert steps == [32, 64, 96, 128]


def test_agent_actor_uses_rolling_windows(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, run_name="agent"), show_progress=False)
    agent = load_agent(result.run_dir)
    assert not agent.policy.training
    assert agent.observation_space == gymnasium.spaces.Box(
        -np.inf, np.inf, (4,), np.float32
    ) or agent.observation_space.shape == (4,)
    assert agent.action_space == gymnasium.spaces.Discrete(2)
    state = load_checkpoint(result.run_dir)
    np.testing.assert_allclose(agent.obs_normalizer.mean, state["obs_normalizer"]["mean"])

    envs = gymnasium.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    actor = agent.make_actor(3)
    starts = np.ones(3, bool)
    history = []
    for _ in range(6):
        actions = actor.act(obs, starts)
        assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}
        history.append(agent.obs_normalizer.normalize(obs))
        # The actor's action equals the traceable window method on the same window.
        window = np.stack(history[-4:], axis=1)
        pad = 4 - window.shape[1]
        full = np.concatenate([np.zeros((3, pad, 4), np.float32), window], axis=1)
        valid = np.array([[False] * pad + [True] * (4 - pad)] * 3)
        with torch.no_grad():
            expected = agent.policy.deterministic_action_window(
                torch.from_numpy(full), torch.from_numpy(valid), torch.ones(3)
            )
        np.testing.assert_array_equal(actions, expected.numpy())
        obs, *_ = envs.step(actions)
        starts = np.zeros(3, bool)
    # An episode start clears that env's context: it then acts like a fresh actor.
    fresh = agent.make_actor(3)
    starts = np.array([True, False, False])
    np.testing.assert_array_equal(actor.act(obs, starts)[0], fresh.act(obs, np.ones(3, bool))[0])
    # Control 0.0 plays uniformly random actions.
    random_actor = agent.make_actor(1, control=0.0, seed=1)
    picks = [int(random_actor.act(obs[:1], np.array([True]))[0]) for _ in range(200)]
    assert 60 < sum(picks) < 140
    assert agent.make_actor(1, num_input_states=1).k == 1


@pytest.mark.parametrize(
    "env_id", ["agentgpt/HybridTarget-v0", "agentgpt/MultiDiscreteTarget-v0", "agentgpt/DictObs-v0"]
)
def test_trains_on_structured_spaces(tmp_path: Path, env_id: str) -> None:
    result = train(tiny(tmp_path, env_id=env_id, run_name="s"), show_progress=False)
    rows = read_csv(result.run_dir / "metrics.csv")
    assert len(rows) == 4 and all(np.isfinite(float(r["policy_loss"])) for r in rows)
    agent = load_agent(result.run_dir)
    env = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    obs, _ = env.reset(seed=0)
    actions = agent.make_actor(2, deterministic=False).act(obs, np.ones(2, bool))
    for i in range(2):
        single = {k: v[i] for k, v in actions.items()} if isinstance(actions, dict) else actions[i]
        assert env.single_action_space.contains(single)


def test_cli_flags_override_yaml(tmp_path: Path) -> None:
    config = tmp_path / "hp.yaml"
    config.write_text(yaml.safe_dump({"gamma": 0.95, "learning_rate": 5e-4, "num_envs": 4}))
    app = typer.Typer()
    commands.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `train` a named subcommand
        pass

    args = [
        "train", "CartPole-v1", "--config", str(config), "--learning-rate", "2e-4",
        "--num-envs", "2", "--rollout-steps", "16", "--num-input-states", "4",
        "--max-input-states", "4", "--total-steps", "64", "--no-normalize-obs",
        "--runs-dir", str(tmp_path), "--run-name", "cli", "--torch-threads", "1",
        "--d-model", "16", "--num-heads", "2", "--no-progress",
    ]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "Trained 64 steps" in out.output
    saved = Hyperparameters.from_yaml(tmp_path / "cli" / "hyperparameters.yaml")
    assert saved.gamma == 0.95  # from YAML
    assert saved.learning_rate == 2e-4  # flag beats YAML
    assert saved.num_envs == 2 and saved.normalize_obs is False
    resumed = CliRunner().invoke(
        app,
        [
            "train",
            "--resume",
            "--run-name",
            "cli",
            "--runs-dir",
            str(tmp_path),
            "--total-steps",
            "96",
            "--no-progress",
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    assert "Trained 96 steps" in resumed.output
    # Without --total-steps a resumed run keeps its saved budget (not the 100k default).
    again = CliRunner().invoke(
        app,
        ["train", "--resume", "--run-name", "cli", "--runs-dir", str(tmp_path), "--no-progress"],
    )
    assert again.exit_code == 0, again.output
    assert "Trained 96 steps" in again.output


def test_cli_module_loads_without_torch() -> None:
    code = (
        "import sys, typer; from agentgpt.cli import train as commands; "
        "commands.register(typer.Typer()); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_one_liner(tmp_path: Path) -> None:
    result = AgentGPT.train(
        "CartPole-v1",
        **{k: v for k, v in tiny(tmp_path, run_name="api").to_dict().items() if k != "env_id"},
    )
    assert result.global_step == 128
    agent = AgentGPT.load(result.run_dir)
    assert agent.run_dir == tmp_path / "api" and agent.env.env_id == "CartPole-v1"
    assert agent.model.d_model == 16 and agent.model.num_input_states == 4
    # Resuming without total_steps keeps the run's own budget (128), not the 100k default.
    again = AgentGPT.train("CartPole-v1", resume=True, run_name="api", runs_dir=str(tmp_path))
    assert again.global_step == 128
