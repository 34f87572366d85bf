"""PPO pieces: GAE across episode ends, rollout collection, normalization, tuning."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from agentgpt.agent.normalization import ObsNormalizer, RunningMeanStd
from agentgpt.core.local import LocalVectorEnv
from agentgpt.policy import GPTPolicy
from agentgpt.policy.encoders import ObsTensors
from agentgpt.train.collector import Collector
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.ppo import (
    EntropyTuner,
    compute_gae,
    ppo_update,
    training_windows,
    window_layout,
)
from agentgpt.train.reward_scaling import RewardScaler

GAMMA, LAM = 0.9, 0.5


def _gae(terminated_at_1: bool):
    rewards = np.array([[1.0, 2.0, 0.0, 3.0, 4.0]])
    values = np.array([[0.5, 0.6, 0.7, 0.8, 0.9]])
    valid = np.array([[True, True, False, True, True]])
    term = np.array([[False, terminated_at_1, False, False, False]])
    trunc = np.array([[False, not terminated_at_1, False, False, False]])
    return compute_gae(rewards, values, valid, term, trunc, np.array([2.0]), GAMMA, LAM)


def test_gae_bootstraps_truncation_from_the_final_observation() -> None:
    adv, ret = _gae(terminated_at_1=False)
    d4 = 4 + GAMMA * 2.0 - 0.9
    d3 = 3 + GAMMA * 0.9 - 0.8
    d1 = 2 + GAMMA * 0.7 - 0.6  # 0.7 is the value of the final observation (token 2)
    d0 = 1 + GAMMA * 0.6 - 0.5
    expected = [d0 + GAMMA * LAM * d1, d1, 0.0, d3 + GAMMA * LAM * d4, d4]
    np.testing.assert_allclose(adv[0], expected)
    np.testing.assert_allclose(ret, adv + np.array([[0.5, 0.6, 0.7, 0.8, 0.9]]))


def test_gae_does_not_bootstrap_termination() -> None:
    adv, _ = _gae(terminated_at_1=True)
    d1 = 2 - 0.6
    assert adv[0, 1] == pytest.approx(d1)
    assert adv[0, 0] == pytest.approx(1 + GAMMA * 0.6 - 0.5 + GAMMA * LAM * d1)
    assert adv[0, 2] == 0.0


def _collector(control_random_prob: float = 0.25, num_envs: int = 3, window_stride: int = 4):
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make("CartPole-v1", max_episode_steps=5)] * num_envs
    )
    hp = Hyperparameters(
        num_envs=num_envs,
        rollout_steps=16,
        num_input_states=4,
        max_input_states=4,
        control_random_prob=control_random_prob,
        train_window=4,
        window_stride=window_stride,
    )
    torch.manual_seed(0)
    policy = GPTPolicy(
        envs.single_observation_space,
        envs.single_action_space,
        max_input_states=4,
        num_input_states=4,
    ).eval()
    normalizer = ObsNormalizer(4)
    collector = Collector(
        LocalVectorEnv(envs),
        policy,
        normalizer,
        RewardScaler(num_envs, 0.99),
        rollout_steps=hp.rollout_steps,
        window=hp.window,
        stride=hp.stride,
        control_random_prob=hp.control_random_prob,
        seed=hp.seed,
    )
    collector.reset(seed=3)
    return collector, policy, hp


def test_rollout_never_crosses_an_episode_end() -> None:
    collector, _, _ = _collector()
    rollout = collector.collect(16)
    valid = rollout.valid.numpy()
    done = rollout.terminated | rollout.truncated
    # The token after every episode end is the final observation: not a decision.
    np.testing.assert_array_equal(valid[:, 1:], ~done[:, :-1])
    assert valid[:, 0].all()
    assert done.any() and rollout.truncated.any()
    # Episodes of a 5-step limit: a new episode starts right after each final observation.
    starts = rollout.starts.numpy()
    expected_starts = np.zeros_like(starts)
    expected_starts[:, 0] = True
    expected_starts[:, 2:] |= ~valid[:, 1:-1]
    np.testing.assert_array_equal(starts, expected_starts)
    # Final observations earn nothing and end nothing.
    assert (rollout.rewards[~valid] == 0).all()
    assert not done[~valid].any()
    lengths = [e.length for e in collector.episodes]
    assert len(lengths) == done.sum() and max(lengths) <= 5


@pytest.mark.parametrize("stride", [4, 2, 1])
def test_acting_context_equals_training_context(stride: int) -> None:
    """Log-probs stored while acting equal a fresh pass over the training windows, so
    the PPO ratio starts at exactly 1, and every step is trained exactly once."""
    collector, policy, hp = _collector(window_stride=stride)
    rollout = collector.collect(16)
    seq = training_windows(rollout, 4, stride)
    assert seq["vector"].shape == (3 * 16 // stride, 4, 4)
    with torch.no_grad():
        out = policy(ObsTensors(seq["vector"], seq["discrete"], []), seq["starts"], seq["control"])
        logp = out.dist.log_prob(seq["disc"], seq["cont"])
    trained = seq["trained"]
    assert int(trained.sum()) == 3 * 16
    sel = trained & seq["from_policy"]
    assert sel.sum() > 10
    torch.testing.assert_close(logp[sel], seq["logp"][sel], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.values[trained], seq["values"][trained], atol=1e-5, rtol=1e-5)


def test_window_layout_trains_each_step_once_with_long_contexts() -> None:
    index, trained = window_layout(steps=16, k=8, stride=4)
    assert index.shape == (4, 8)
    assert sorted(index[trained].tolist()) == list(range(16))
    # After the first window, every trained step sees at least k - stride + 1 steps.
    for w in range(1, 4):
        first_trained = int(trained[w].float().argmax())
        assert first_trained == 4 and int(index[w, 0]) == 4 * w - 4


def test_control_mix_flags_random_actions() -> None:
    collector, _, _ = _collector(control_random_prob=0.0)
    rollout = collector.collect(16)
    # Every decision comes from the policy (final observations are no decisions).
    assert torch.equal(rollout.from_policy, rollout.valid) and (rollout.control == 1.0).all()
    collector, _, _ = _collector(control_random_prob=1.0, num_envs=8)
    rollout = collector.collect(16)
    control = rollout.control.numpy()
    assert (control < 1.0).all()
    # Random actions happen with probability 1 - control.
    valid = rollout.valid
    frac_random = 1.0 - rollout.from_policy[valid].float().mean().item()
    assert frac_random == pytest.approx(1.0 - control[valid.numpy()].mean(), abs=0.1)


def test_first_update_starts_at_ratio_one_and_moves_the_policy() -> None:
    collector, policy, hp = _collector()
    rollout = collector.collect(16)
    adv, ret = compute_gae(
        rollout.rewards.astype(float),
        rollout.values.numpy().astype(float),
        rollout.valid.numpy(),
        rollout.terminated,
        rollout.truncated,
        rollout.last_value,
        0.99,
        0.95,
    )
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = ppo_update(
        policy,
        opt,
        rollout,
        adv,
        ret,
        hp.replace(epochs=1, num_minibatches=1).ppo,
        0.0,
        torch.Generator().manual_seed(0),
    )
    assert stats.minibatches == 1
    # One step from ratio 1: nothing is clipped yet and KL is 0 at the first minibatch.
    assert stats.clip_fraction == 0.0
    assert abs(stats.approx_kl) < 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_running_mean_std_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 2))
    rms = RunningMeanStd((2,))
    for chunk in np.array_split(data, 7):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)
    norm = ObsNormalizer(2, clip=5.0)
    norm.update(data)
    out = norm.normalize(data)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)
    assert np.abs(norm.normalize(np.array([[1e6, -1e6]]))).max() == 5.0
    manual = np.clip((data - norm.mean) / np.sqrt(norm.var + norm.epsilon), -norm.clip, norm.clip)
    np.testing.assert_allclose(out, manual, atol=1e-6)


def test_reward_scaler_brings_returns_to_unit_scale() -> None:
    scaler = RewardScaler(num_envs=4, gamma=0.99)
    active = np.ones(4, bool)
    for t in range(2000):
        done = np.full(4, t % 100 == 99)
        scaled = scaler(np.full(4, 50.0), done, active)
    # Discounted returns of 50/step over 100 steps have a std of several hundred; scaled
    # rewards are far below the raw 50.
    assert 0.01 < scaled[0] < 1.0


def test_entropy_coefficient_tracks_the_target() -> None:
    policy = GPTPolicy(gymnasium.spaces.Box(-1, 1, (2,)), gymnasium.spaces.Discrete(4))
    hp = Hyperparameters(target_entropy_start=0.5, target_entropy_end=0.0, ent_coef=0.0)
    tuner = EntropyTuner(policy, hp.ppo)
    assert tuner.target(0.0) == pytest.approx(0.5 * np.log(4))
    assert tuner.target(1.0) == 0.0
    for _ in range(5):
        tuner.update(entropy=0.1, progress=0.0)  # far below target: coefficient grows
    assert tuner.coef > 0.0
    for _ in range(100):
        tuner.update(entropy=1.3, progress=0.5)  # above target: back to zero
    assert tuner.coef == 0.0
    off = EntropyTuner(policy, hp.replace(adapt_entropy=False, ent_coef=0.01).ppo)
    assert off.update(entropy=0.0, progress=0.0) == 0.01
