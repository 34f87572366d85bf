"""GPTPolicy: encoders per observation space, heads per action space, masking, windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agentgpt.policy import GPTPolicy
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.spaces import ActionCodec, ObservationCodec

BOX = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)

OBS_SPACES = {
    "box": BOX,
    "box2d": spaces.Box(-1.0, 1.0, shape=(2, 3), dtype=np.float32),
    "image": spaces.Box(0, 255, shape=(16, 16, 3), dtype=np.uint8),
    "discrete": spaces.Discrete(5, start=2),
    "multidiscrete": spaces.MultiDiscrete([3, 4]),
    "multibinary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"pos": BOX, "kind": spaces.Discrete(3)}),
    "tuple": spaces.Tuple((BOX, spaces.MultiBinary(2), spaces.Box(0, 255, (8, 8), np.uint8))),
}

ACTION_SPACES = {
    "discrete": spaces.Discrete(4, start=1),
    "multidiscrete": spaces.MultiDiscrete([3, 5]),
    "multibinary": spaces.MultiBinary(3),
    "box": spaces.Box(
        np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32), dtype=np.float32
    ),
    "hybrid": spaces.Dict(
        {"choice": spaces.Discrete(3), "amount": spaces.Box(-1.0, 1.0, (1,), np.float32)}
    ),
    "tuple": spaces.Tuple((spaces.Discrete(2), spaces.Box(-1.0, 1.0, (2,), np.float32))),
}


def _tensors(codec: ObservationCodec, obs, batch: int, steps: int) -> ObsTensors:
    parts = codec.encode(obs, batch * steps)
    return ObsTensors(
        torch.from_numpy(parts.vector).reshape(batch, steps, -1),
        torch.from_numpy(parts.discrete).reshape(batch, steps, -1),
        [torch.from_numpy(im).reshape(batch, steps, *im.shape[1:]) for im in parts.images],
    )


def _batch_sample(space: spaces.Space, n: int, seed: int = 0):
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {k: np.stack([s[k] for s in samples]) for k in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(np.stack([s[i] for s in samples]) for i in range(len(space.spaces)))
    return np.stack(samples)


@pytest.mark.parametrize("name", sorted(OBS_SPACES))
def test_every_observation_space_encodes_to_tokens(name: str) -> None:
    torch.manual_seed(0)
    space = OBS_SPACES[name]
    policy = GPTPolicy(space, spaces.Discrete(2), max_input_states=4, num_input_states=4)
    obs = _tensors(policy.obs_codec, _batch_sample(space, 8), 2, 4)
    starts = torch.tensor([[True, False, False, False], [True, False, True, False]])
    out = policy(obs, starts, torch.ones(2, 4))
    assert out.values.shape == (2, 4)
    assert torch.isfinite(out.values).all()
    # Different observations give different tokens: the encoder reads the observation.
    other = _tensors(policy.obs_codec, _batch_sample(space, 8, seed=1), 2, 4)
    assert not torch.allclose(policy(other, starts, torch.ones(2, 4)).values, out.values)


def test_discrete_observation_start_is_removed() -> None:
    codec = ObservationCodec(spaces.Discrete(5, start=2))
    parts = codec.encode(np.array([2, 6]), 2)
    assert parts.discrete.tolist() == [[0], [4]]


@pytest.mark.parametrize("name", sorted(ACTION_SPACES))
def test_sampled_actions_are_valid_env_actions(name: str) -> None:
    torch.manual_seed(0)
    space = ACTION_SPACES[name]
    policy = GPTPolicy(BOX, space, max_input_states=4, num_input_states=4)
    obs = ObsTensors(torch.randn(64, 1, 3), torch.zeros(64, 1, 0, dtype=torch.long), [])
    with torch.no_grad():
        out = policy(obs, torch.ones(64, 1, dtype=torch.bool), torch.ones(64, 1))
    # A wide Gaussian so clipping into the bounds is exercised.
    out.dist.log_std = torch.full_like(out.dist.mean, 1.5)
    disc, cont = out.dist.sample(torch.Generator().manual_seed(0))
    actions = policy.action_codec.to_env(disc[:, 0].numpy(), cont[:, 0].numpy())
    for i in range(64):
        if isinstance(space, spaces.Dict):
            single = {k: v[i] for k, v in actions.items()}
        elif isinstance(space, spaces.Tuple):
            single = tuple(v[i] for v in actions)
        else:
            single = actions[i]
        assert space.contains(single), (name, single)
    logp = out.dist.log_prob(disc, cont)
    assert torch.isfinite(logp).all() and logp.shape == (64, 1)


def test_joint_log_prob_sums_independent_components() -> None:
    policy = GPTPolicy(BOX, ACTION_SPACES["hybrid"], max_input_states=2, num_input_states=2)
    obs = ObsTensors(torch.randn(1, 1, 3), torch.zeros(1, 1, 0, dtype=torch.long), [])
    out = policy(obs, torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1))
    disc, cont = torch.tensor([[[2]]]), torch.tensor([[[0.3]]])
    hidden = policy._trunk(obs, torch.ones(1, 1), torch.ones(1, 1, 1, dtype=torch.bool))
    logits = policy.policy_head(hidden)
    cat = torch.distributions.Categorical(logits=logits[..., :3])
    normal = torch.distributions.Normal(logits[..., 3:], policy.log_std.exp())
    expected = cat.log_prob(disc[..., 0]) + normal.log_prob(cont).sum(-1)
    assert torch.allclose(out.dist.log_prob(disc, cont), expected, atol=1e-5)
    assert torch.allclose(out.dist.entropy(), cat.entropy() + normal.entropy().sum(-1), atol=1e-5)


def test_action_mask_is_honoured() -> None:
    torch.manual_seed(0)
    policy = GPTPolicy(BOX, spaces.MultiDiscrete([3, 2]), max_input_states=2, num_input_states=2)
    obs = ObsTensors(torch.randn(256, 1, 3), torch.zeros(256, 1, 0, dtype=torch.long), [])
    mask = torch.tensor([True, False, True, False, True]).expand(256, 1, 5)
    out = policy(obs, torch.ones(256, 1, dtype=torch.bool), torch.ones(256, 1), mask)
    disc, _ = out.dist.sample(torch.Generator().manual_seed(0))
    assert set(disc[..., 0].unique().tolist()) == {0, 2}
    assert disc[..., 1].unique().tolist() == [1]
    assert torch.isfinite(out.dist.entropy()).all()
    # Random actions for control < 1 respect the mask too.
    rng = np.random.default_rng(0)
    r_disc, _ = ActionCodec(spaces.MultiDiscrete([3, 2])).sample_random(
        rng, 500, mask[:, 0].numpy()[:1].repeat(500, 0)
    )
    assert set(r_disc[:, 0].tolist()) == {0, 2} and set(r_disc[:, 1].tolist()) == {1}


def test_mask_from_info_reads_vector_env_infos() -> None:
    codec = ActionCodec(spaces.Discrete(3))
    info = {
        "action_mask": np.array([[1, 0, 1], [0, 0, 0]], np.int8),
        "_action_mask": np.array([True, False]),
    }
    mask = codec.mask_from_info(info, 2)
    assert mask.tolist() == [[True, False, True], [True, True, True]]
    assert codec.mask_from_info({}, 2) is None


def test_box_actions_are_scaled_into_bounds() -> None:
    codec = ActionCodec(ACTION_SPACES["box"])
    env = codec.to_env(np.zeros((3, 0), np.int64), np.array([[-5.0, 1.0], [0.0, 0.0], [1.0, -1.0]]))
    np.testing.assert_allclose(env, [[-2.0, 10.0], [0.0, 5.0], [2.0, 0.0]])


def test_no_window_mixes_two_episodes() -> None:
    torch.manual_seed(0)
    policy = GPTPolicy(BOX, spaces.Discrete(2), max_input_states=6, num_input_states=6)
    vec = torch.randn(1, 6, 3)
    starts = torch.tensor([[True, False, False, True, False, False]])
    obs = ObsTensors(vec, torch.zeros(1, 6, 0, dtype=torch.long), [])
    base = policy(obs, starts, torch.ones(1, 6)).values
    changed = vec.clone()
    changed[:, :3] += 5.0  # only the previous episode changes
    out = policy(ObsTensors(changed, obs.discrete, []), starts, torch.ones(1, 6)).values
    assert torch.allclose(out[:, 3:], base[:, 3:], atol=1e-6)
    assert not torch.allclose(out[:, :3], base[:, :3])
    # Causality: a future observation never changes an earlier output.
    future = vec.clone()
    future[:, 5] += 5.0
    out = policy(ObsTensors(future, obs.discrete, []), starts, torch.ones(1, 6)).values
    assert torch.allclose(out[:, :5], base[:, :5], atol=1e-6)


def test_window_and_packed_forms_agree() -> None:
    """A left-padded window equals the packed sequence holding the same episode."""
    torch.manual_seed(0)
    policy = GPTPolicy(BOX, spaces.Discrete(3), max_input_states=5, num_input_states=5)
    episode = torch.randn(1, 3, 3)
    packed = policy(
        ObsTensors(episode, torch.zeros(1, 3, 0, dtype=torch.long), []),
        torch.tensor([[True, False, False]]),
        torch.full((1, 3), 0.7),
    )
    window = torch.cat([torch.randn(1, 2, 3), episode], dim=1)  # 2 padding steps
    valid = torch.tensor([[False, False, True, True, True]])
    single = policy.forward_window(
        ObsTensors(window, torch.zeros(1, 5, 0, dtype=torch.long), []), valid, torch.tensor([0.7])
    )
    assert torch.allclose(single.values, packed.values[:, -1], atol=1e-5)
    assert torch.allclose(single.dist.log_probs, packed.dist.log_probs[:, -1], atol=1e-5)


def test_context_can_shrink_at_inference() -> None:
    policy = GPTPolicy(BOX, spaces.Discrete(2), max_input_states=8, num_input_states=8)
    policy.set_num_input_states(1)
    assert policy.num_input_states == 1
    with pytest.raises(ValueError):
        policy.set_num_input_states(9)
    with pytest.raises(ValueError):
        policy.set_num_input_states(0)


def test_control_value_is_an_input() -> None:
    torch.manual_seed(0)
    policy = GPTPolicy(BOX, spaces.Discrete(2), max_input_states=2, num_input_states=2)
    torch.nn.init.normal_(policy.value_head.weight)
    obs = ObsTensors(torch.randn(1, 2, 3), torch.zeros(1, 2, 0, dtype=torch.long), [])
    starts = torch.tensor([[True, False]])
    low = policy(obs, starts, torch.zeros(1, 2)).values
    high = policy(obs, starts, torch.ones(1, 2)).values
    assert not torch.allclose(low, high)


@pytest.mark.parametrize("name", ["discrete", "box", "hybrid"])
def test_deterministic_action_window_traces_without_value_branches(name: str) -> None:
    torch.manual_seed(0)
    policy = GPTPolicy(BOX, ACTION_SPACES[name], max_input_states=4, num_input_states=4).eval()
    obs = torch.randn(5, 4, 3)
    valid = torch.tensor(
        [[True] * 4, [False, True, True, True], [False, False, False, True]] + [[True] * 4] * 2
    )
    control = torch.ones(5)

    class Window(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, obs, valid, control):
            return self.policy.deterministic_action_window(obs, valid, control)

    traced = torch.export.export(Window(), (obs, valid, control)).module()
    # A graph captured with one mask must give the eager result for other masks and batch rows.
    other_valid = valid.flip(0)
    other_obs = torch.randn(5, 4, 3)
    with torch.no_grad():
        expected = policy.deterministic_action_window(other_obs, other_valid, control)
    assert torch.equal(traced(other_obs, other_valid, control), expected)
    if name == "box":
        low, high = ACTION_SPACES["box"].low, ACTION_SPACES["box"].high
        assert (expected.numpy() >= low).all() and (expected.numpy() <= high).all()
    if name == "hybrid":
        assert expected.shape == (5, 2)
        env_action = policy.flat_action_to_env(expected.numpy())
        assert ACTION_SPACES["hybrid"].contains({k: v[0] for k, v in env_action.items()})
