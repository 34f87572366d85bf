"""ONNX export: onnxruntime agrees with torch and with the agent's own actor.

Tiny real training runs (CartPole-v1: a discrete policy; Pendulum-v1: a continuous one)
provide trained weights and real normalizer statistics; the window fed to onnxruntime is
built exactly as ``docs/onnx.md`` tells a game engine to build it.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from agentgpt.agent.agent import Agent
from agentgpt.agent.checkpoint import load_agent
from agentgpt.agent.config import ModelConfig
from agentgpt.agent.export import export_onnx, exportable
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.env_spec import EnvSpec
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cartpole_run(tiny_run) -> Path:
    return tiny_run("CartPole-v1")


@pytest.fixture(scope="module")
def pendulum_run(tiny_run) -> Path:
    return tiny_run("Pendulum-v1")


def _untrained_agent(env_id: str, seed: int = 0) -> Agent:
    """An agent with random weights and non-trivial normalizer statistics."""
    import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)

    env = gymnasium.make(env_id)
    torch.manual_seed(seed)
    policy = GPTPolicy(env.observation_space, env.action_space).eval()
    normalizer = ObsNormalizer(policy.obs_codec.vector_dim, clip=5.0)
    rng = np.random.default_rng(seed)
    normalizer.update(rng.normal(0.3, 2.0, size=(500, policy.obs_codec.vector_dim)))
    return Agent(policy, ModelConfig(), EnvSpec(env_id), normalizer)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _random_windows(
    rng: np.random.Generator, batch: int, k: int, dim: int
) -> dict[str, np.ndarray]:
    obs = (rng.normal(size=(batch, k, dim)) * rng.choice([0.1, 1.0, 10.0])).astype(np.float32)
    mask = np.zeros((batch, k), np.float32)
    for b in range(batch):
        mask[b, rng.integers(0, k) :] = 1.0  # left padding, newest slot always real
    control = rng.uniform(0.0, 1.0, size=batch).astype(np.float32)
    return {"obs": obs, "mask": mask, "control": control}


def _torch_outputs(agent: Agent, feed: dict[str, np.ndarray], with_log_probs: bool):
    module = exportable(agent, with_log_probs=with_log_probs)
    with torch.no_grad():
        out = module(*(torch.from_numpy(feed[name]) for name in ("obs", "mask", "control")))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def test_graph_interface_and_baked_normalizer(cartpole_run: Path, tmp_path: Path) -> None:
    path = export_onnx(cartpole_run, tmp_path / "agent.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    session = _session(path)
    inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert inputs == {
        "obs": (["batch", 16, 4], "tensor(float)"),
        "mask": (["batch", 16], "tensor(float)"),
        "control": (["batch"], "tensor(float)"),
    }
    outputs = {o.name: (o.shape, o.type) for o in session.get_outputs()}
    assert outputs == {"action": (["batch"], "tensor(int64)")}

    # The normalizer inside the graph is the run's own.
    agent = load_agent(cartpole_run)
    module = exportable(agent)
    raw = np.random.default_rng(0).normal(0, 3, size=(64, 4)).astype(np.float32)
    expected = agent.obs_normalizer.normalize(raw)
    got = module.normalize(torch.from_numpy(raw)).numpy()
    assert not np.allclose(expected, raw)  # the statistics are not the identity
    assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("batch", [1, 7])
def test_discrete_policy_matches_torch_on_random_windows(
    cartpole_run: Path, tmp_path: Path, batch: int
) -> None:
    agent = load_agent(cartpole_run)
    session = _session(export_onnx(agent, tmp_path / "a.onnx", with_log_probs=True))
    rng = np.random.default_rng(batch)
    for _ in range(20):
        feed = _random_windows(rng, batch, 16, 4)
        action, log_probs = session.run(None, feed)
        t_action, t_log_probs = _torch_outputs(agent, feed, with_log_probs=True)
        assert action.shape == (batch,) and action.dtype == np.int64
        assert np.array_equal(action, t_action)
        assert np.abs(log_probs - t_log_probs).max() <= TOLERANCE
        assert np.array_equal(action, log_probs[:, 0, :].argmax(-1))


def test_continuous_policy_matches_torch_on_random_windows(
    pendulum_run: Path, tmp_path: Path
) -> None:
    agent = load_agent(pendulum_run)
    session = _session(export_onnx(agent, tmp_path / "p.onnx"))
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        for _ in range(20):
            feed = _random_windows(rng, batch, 16, 3)
            (action,) = session.run(None, feed)
            (t_action,) = _torch_outputs(agent, feed, with_log_probs=False)
            assert action.shape == (batch, 1) and action.dtype == np.float32
            assert np.all(np.abs(action) <= 2.0)  # Pendulum's torque bounds
            assert np.abs(action - t_action).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("env_id", "action_shape", "dtype"),
    [
        ("agentgpt/MultiDiscreteTarget-v0", (3,), np.int64),
        ("agentgpt/HybridTarget-v0", (2,), np.float32),
        ("agentgpt/MemoryCue-v0", (), np.int64),
    ],
)
def test_other_action_spaces_match_torch(
    env_id: str, action_shape: tuple[int, ...], dtype: type, tmp_path: Path
) -> None:
    agent = _untrained_agent(env_id)
    dim = agent.policy.obs_codec.vector_dim
    session = _session(export_onnx(agent, tmp_path / "m.onnx"))
    rng = np.random.default_rng(2)
    for _ in range(10):
        feed = _random_windows(rng, 4, 16, dim)
        (action,) = session.run(None, feed)
        (t_action,) = _torch_outputs(agent, feed, with_log_probs=False)
        assert action.shape == (4, *action_shape) and action.dtype == dtype
        assert np.abs(action.astype(np.float64) - t_action).max() <= TOLERANCE
        if env_id == "agentgpt/HybridTarget-v0":
            env_actions = agent.policy.flat_action_to_env(action)
            space = agent.action_space
            assert all(
                space.contains({"choice": c, "amount": a.astype(np.float32)})
                for c, a in zip(env_actions["choice"], env_actions["amount"], strict=True)
            )


class EngineWindow:
    """What docs/onnx.md tells an engine to keep per agent: a K-slot ring of raw obs."""

    def __init__(self, k: int, dim: int) -> None:
        self.obs = np.zeros((k, dim), np.float32)
        self.mask = np.zeros(k, np.float32)

    def start_episode(self) -> None:
        self.obs[:] = 0.0
        self.mask[:] = 0.0

    def push(self, observation: np.ndarray) -> None:
        self.obs[:-1] = self.obs[1:].copy()
        self.mask[:-1] = self.mask[1:].copy()
        self.obs[-1] = observation
        self.mask[-1] = 1.0


@pytest.mark.parametrize("k", [16, 4])
def test_engine_fed_window_reproduces_the_actor_on_real_episodes(
    cartpole_run: Path, tmp_path: Path, k: int
) -> None:
    agent = load_agent(cartpole_run)
    session = _session(
        export_onnx(agent, tmp_path / "c.onnx", num_input_states=k, with_log_probs=True)
    )
    assert session.get_inputs()[0].shape == ["batch", k, 4]
    actor = agent.make_actor(1, num_input_states=k, control=1.0, deterministic=True)
    env = gymnasium.make("CartPole-v1")
    window = EngineWindow(k, 4)
    steps = 0
    for episode in range(3):
        obs, _ = env.reset(seed=100 + episode)
        window.start_episode()
        start, done = True, False
        while not done and steps < 600:
            actor_action = actor.act(obs[None], np.array([start]))
            window.push(obs)
            action, log_probs = session.run(
                None,
                {
                    "obs": window.obs[None],
                    "mask": window.mask[None],
                    "control": np.ones(1, np.float32),
                },
            )
            # The actor's own window (normalized, stale padding) gives the same numbers.
            with torch.no_grad():
                actor_window = ObsTensors(actor.vector, actor.discrete, actor.images)
                out = agent.policy.forward_window(actor_window, actor.valid, torch.ones(1))
            assert np.abs(log_probs - out.dist.log_probs.numpy()).max() <= TOLERANCE
            assert int(action[0]) == int(actor_action[0])
            obs, _, terminated, truncated, _ = env.step(int(action[0]))
            done = terminated or truncated
            start = False
            steps += 1
    assert steps > 30


def test_continuous_engine_window_reproduces_the_actor(pendulum_run: Path, tmp_path: Path) -> None:
    agent = load_agent(pendulum_run)
    session = _session(export_onnx(agent, tmp_path / "p.onnx"))
    actor = agent.make_actor(1, control=1.0, deterministic=True)
    env = gymnasium.make("Pendulum-v1")
    window = EngineWindow(16, 3)
    obs, _ = env.reset(seed=7)
    window.start_episode()
    worst = 0.0
    for t in range(60):  # crosses the 16-step window several times
        actor_action = actor.act(obs[None], np.array([t == 0]))
        window.push(obs)
        (action,) = session.run(
            None,
            {"obs": window.obs[None], "mask": window.mask[None], "control": np.ones(1, np.float32)},
        )
        worst = max(worst, float(np.abs(action - actor_action).max()))
        obs, *_ = env.step(action[0])
    assert worst <= TOLERANCE


def test_control_input_changes_the_output(cartpole_run: Path, tmp_path: Path) -> None:
    agent = load_agent(cartpole_run)
    session = _session(export_onnx(agent, tmp_path / "a.onnx", with_log_probs=True))
    feed = _random_windows(np.random.default_rng(5), 8, 16, 4)
    _, at_one = session.run(None, {**feed, "control": np.ones(8, np.float32)})
    _, at_zero = session.run(None, {**feed, "control": np.zeros(8, np.float32)})
    assert np.abs(at_one - at_zero).max() > 1e-6


def test_rejects_structured_observations_and_bad_k(cartpole_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flat Box observation"):
        export_onnx(_untrained_agent("agentgpt/DictObs-v0"), tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="num_input_states"):
        export_onnx(cartpole_run, tmp_path / "k.onnx", num_input_states=17)
    with pytest.raises(ValueError, match="discrete action"):
        export_onnx(_untrained_agent("Pendulum-v1"), tmp_path / "p.onnx", with_log_probs=True)
    assert not list(tmp_path.iterdir())


def test_export_cli_writes_a_runnable_model(cartpole_run: Path, tmp_path: Path) -> None:
    from agentgpt.cli import app

    target = tmp_path / "out" / "agent.onnx"
    result = CliRunner().invoke(app, ["export", str(cartpole_run), "--onnx", str(target)])
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    feed = _random_windows(np.random.default_rng(0), 3, 16, 4)
    (action,) = _session(target).run(None, feed)
    assert np.array_equal(action, _torch_outputs(load_agent(cartpole_run), feed, False)[0])

    missing = CliRunner().invoke(app, ["export", str(tmp_path), "--onnx", str(target)])
    assert missing.exit_code == 2 and "no checkpoint" in missing.output
