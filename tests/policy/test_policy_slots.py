"""SlotContexts: per-env cached contexts act exactly as the policy on each whole context.

The contract pinned here: after any interleaving of ``extend`` and ``clear`` calls over
slots (different subsets in any order, one or several tokens at a time, episodes
starting mid-context, contexts longer than the distance table), the output at each
slot's newest token equals ``GPTPolicy.forward`` on that slot's whole context.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agentgpt.policy import GPTPolicy, PolicyOutput
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.slots import SlotContexts
from agentgpt.policy.transformer import CausalSelfAttention, distances, segment_mask

TOLERANCE = 1e-5


def _env_spaces(env_id: str) -> tuple[spaces.Space, spaces.Space]:
    env = gymnasium.make(env_id)
    env.close()
    return env.observation_space, env.action_space


CASES: dict[str, tuple[spaces.Space, spaces.Space]] = {
    # CartPole's own spaces; its observations come from real CartPole-v1 envs.
    "cartpole": _env_spaces("CartPole-v1"),
    "dict-discrete": (
        spaces.Dict(
            {
                "pos": spaces.Box(-1.0, 1.0, (3,), np.float32),
                "kind": spaces.Discrete(3),
                "flags": spaces.MultiBinary(2),
            }
        ),
        spaces.MultiDiscrete([3, 4]),
    ),
    "continuous": (
        spaces.Box(-1.0, 1.0, (3,), np.float32),
        spaces.Box(-2.0, 2.0, (2,), np.float32),
    ),
    "image-hybrid": (
        spaces.Tuple((spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.Discrete(4))),
        spaces.Dict(
            {"choice": spaces.Discrete(3), "amount": spaces.Box(-1.0, 1.0, (1,), np.float32)}
        ),
    ),
}


class Token(NamedTuple):
    """One timestep of one env, already encoded."""

    vector: torch.Tensor
    discrete: torch.Tensor
    images: list[torch.Tensor]
    start: bool
    control: float


def _batched(space: spaces.Space, obs: Any) -> Any:
    """One observation as a batch of one, the form ``ObservationCodec.encode`` takes."""
    if isinstance(space, spaces.Dict):
        return {key: _batched(sub, obs[key]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_batched(sub, part) for sub, part in zip(space.spaces, obs, strict=True))
    return np.asarray(obs)[None]


class Stream:
    """The token stream of one env: real CartPole-v1 episodes under random actions, or
    space samples with an episode start now and then."""

    def __init__(self, case: str, policy: GPTPolicy, seed: int) -> None:
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.env = gymnasium.make("CartPole-v1") if case == "cartpole" else None
        if self.env is not None:
            self.env.action_space.seed(seed)
        self.space = copy.deepcopy(policy.observation_space)
        self.space.seed(seed)
        self.obs: Any = None
        self.seed = seed

    def next(self) -> Token:
        if self.env is not None:
            start = self.obs is None
            if start:
                self.obs, _ = self.env.reset(seed=self.seed)
                self.seed += 1000
            obs = self.obs
            self.obs, _, terminated, truncated, _ = self.env.step(self.env.action_space.sample())
            if terminated or truncated:
                self.obs = None
        else:
            obs, start = self.space.sample(), bool(self.rng.random() < 0.2)
        parts = self.policy.obs_codec.encode(_batched(self.space, obs), 1)
        return Token(
            torch.from_numpy(parts.vector[0]),
            torch.from_numpy(parts.discrete[0]),
            [torch.from_numpy(image[0]) for image in parts.images],
            start,
            float(self.rng.uniform(0.0, 1.0)),
        )


def _stack(rows: list[list[Token]]) -> tuple[ObsTensors, torch.Tensor, torch.Tensor]:
    """``[B, n]`` model inputs from B rows of n tokens each."""
    obs = ObsTensors(
        torch.stack([torch.stack([t.vector for t in row]) for row in rows]),
        torch.stack([torch.stack([t.discrete for t in row]) for row in rows]),
        [
            torch.stack([torch.stack([t.images[i] for t in row]) for row in rows])
            for i in range(len(rows[0][0].images))
        ],
    )
    starts = torch.tensor([[t.start for t in row] for row in rows])
    control = torch.tensor([[t.control for t in row] for row in rows])
    return obs, starts, control


def _policy(case: str, seed: int = 0, dropout: float = 0.0) -> GPTPolicy:
    """A small policy with large random weights, so every token in context and every
    relative distance visibly moves the outputs (a wrong mask cannot hide)."""
    obs_space, action_space = CASES[case]
    torch.manual_seed(seed)
    policy = GPTPolicy(
        obs_space,
        action_space,
        num_layers=2,
        d_model=32,
        num_heads=4,
        dropout=dropout,
        max_input_states=5,
        num_input_states=5,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in policy.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return policy.eval()


def _reference(policy: GPTPolicy, context: list[Token], mask: torch.Tensor | None) -> PolicyOutput:
    """``forward`` on one slot's whole context, index 0 forced to start it."""
    obs, starts, control = _stack([context])
    starts[0, 0] = True
    with torch.no_grad():
        return policy(obs, starts, control, None if mask is None else mask[None], last_only=True)


def _fixed_action(policy: GPTPolicy) -> tuple[torch.Tensor, torch.Tensor]:
    codec = policy.action_codec
    disc = torch.tensor([size - 1 for size in codec.discrete_sizes], dtype=torch.long)
    cont = torch.linspace(-0.5, 0.5, codec.continuous_dim)
    return disc, cont


def _random_mask(
    policy: GPTPolicy, rng: np.random.Generator, rows: int, keep: torch.Tensor
) -> torch.Tensor:
    """Random allowed choices per component; the choices in ``keep`` stay allowed."""
    mask = torch.from_numpy(rng.random((rows, policy.action_codec.num_logits)) < 0.6)
    offset = 0
    for size, choice in zip(policy.action_codec.discrete_sizes, keep.tolist(), strict=True):
        mask[:, offset + choice] = True
        offset += size
    return mask


def _assert_same(
    out: PolicyOutput, row: int, ref: PolicyOutput, action: tuple[torch.Tensor, torch.Tensor]
) -> None:
    close: Callable[..., None] = torch.testing.assert_close
    close(out.values[row], ref.values[0], atol=TOLERANCE, rtol=0)
    close(out.dist.entropy()[row], ref.dist.entropy()[0], atol=TOLERANCE, rtol=0)
    disc, cont = action
    rows = out.values.shape[0]
    close(
        out.dist.log_prob(disc.expand(rows, -1), cont.expand(rows, -1))[row],
        ref.dist.log_prob(disc[None], cont[None])[0],
        atol=TOLERANCE,
        rtol=0,
    )
    if out.dist.log_probs is not None:
        close(out.dist.log_probs[row], ref.dist.log_probs[0], atol=TOLERANCE, rtol=0)
    close(out.dist.mean[row], ref.dist.mean[0], atol=TOLERANCE, rtol=0)


def _run_schedule(case: str, policy: GPTPolicy, seed: int, ticks: int) -> dict[str, int]:
    """Drive random extend/clear interleavings, checking every output against forward.

    Returns how often each situation the contract covers came up, so the caller can
    assert the schedule exercised all of them.
    """
    num_slots, capacity = 5, 9
    rng = np.random.default_rng(seed)
    contexts = SlotContexts(policy, num_slots, capacity)
    streams = [Stream(case, policy, seed * 100 + slot) for slot in range(num_slots)]
    history: list[list[Token]] = [[] for _ in range(num_slots)]
    action = _fixed_action(policy)
    seen = dict.fromkeys(
        [
            "multi_token",
            "mid_context_start",
            "clear",
            "past_distance_table",
            "context_moves",
            "every_slot_shuffled",
        ],
        0,
    )
    for _ in range(ticks):
        if rng.random() < 0.1:
            cleared = rng.choice(num_slots, size=int(rng.integers(1, num_slots + 1)), replace=False)
            contexts.clear(torch.from_numpy(cleared))
            for slot in cleared:
                history[slot] = []
            seen["clear"] += 1
        slots = rng.choice(num_slots, size=int(rng.integers(1, num_slots + 1)), replace=False)
        steps = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        full = [int(s) for s in slots if len(history[s]) + steps > capacity]
        if full:
            contexts.clear(torch.tensor(full))
            for slot in full:
                history[slot] = []
        rows = [[streams[s].next() for _ in range(steps)] for s in slots]
        obs, starts, control = _stack(rows)
        mask = None
        if policy.action_codec.num_logits and rng.random() < 0.5:
            mask = _random_mask(policy, rng, len(slots), action[0])
        out = contexts.extend(torch.from_numpy(slots), obs, starts, control, mask)
        seen["every_slot_shuffled"] += len(slots) == num_slots and bool(np.any(np.diff(slots) < 0))

        assert out.values.shape == (len(slots),)
        for row, slot in enumerate(slots):
            history[slot].extend(rows[row])
            context = history[slot]
            assert int(contexts.lengths[slot]) == len(context)
            ref = _reference(policy, context, None if mask is None else mask[row])
            _assert_same(out, row, ref, action)
            alone = _reference(policy, context[-1:], None if mask is None else mask[row])
            if not torch.allclose(alone.values, ref.values, atol=1e-3):
                seen["context_moves"] += 1
            seen["multi_token"] += steps > 1
            seen["mid_context_start"] += any(t.start for t in context[1:])
            seen["past_distance_table"] += len(context) > policy.max_input_states
    assert contexts.lengths.tolist() == [len(h) for h in history]
    return seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_interleaving_matches_forward_on_the_whole_context(case: str) -> None:
    seen = _run_schedule(case, _policy(case), seed=1, ticks=40)
    # The schedule covered every situation of the contract, and the contexts mattered:
    # outputs differ from those of the newest token alone.
    assert all(count > 0 for count in seen.values()), seen


def test_dropout_is_off_in_eval_mode() -> None:
    policy = _policy("continuous", seed=2, dropout=0.3)
    assert not policy.training
    seen = _run_schedule("continuous", policy, seed=2, ticks=15)
    assert seen["context_moves"] > 0


def test_every_slot_at_one_length_matches_forward() -> None:
    """Lockstep extends (every slot, in order, at one length: the in-place path) give
    what ``forward`` gives on each slot's whole context, and later subsets still do."""
    policy = _policy("continuous", seed=4)
    contexts = SlotContexts(policy, num_slots=3, capacity=5)
    stream = Stream("continuous", policy, seed=4)
    history: list[list[Token]] = [[], [], []]
    action = _fixed_action(policy)
    for slots, steps in [([0, 1, 2], 2), ([0, 1, 2], 1), ([1], 1), ([0, 1, 2], 1)]:
        rows = [[stream.next() for _ in range(steps)] for _ in slots]
        out = contexts.extend(torch.tensor(slots), *_stack(rows))
        for row, (slot, tokens) in enumerate(zip(slots, rows, strict=True)):
            history[slot] += tokens
            _assert_same(out, row, _reference(policy, history[slot], None), action)
    assert contexts.lengths.tolist() == [4, 5, 4]


def test_every_slot_listed_out_of_order_matches_in_order() -> None:
    """Every slot listed in a shuffled order (a fleet's hosts answer in any order) gives
    each slot the output and cached context that listing them in order gives."""
    policy = _policy("image-hybrid", seed=5)
    shuffled, ordered = (SlotContexts(policy, num_slots=4, capacity=6) for _ in range(2))
    stream = Stream("image-hybrid", policy, seed=5)
    rng = np.random.default_rng(5)
    action = _fixed_action(policy)
    for steps in (2, 1, 1):
        slots = rng.permutation(4)
        rows = [[stream.next() for _ in range(steps)] for _ in slots]
        mask = _random_mask(policy, rng, 4, action[0])
        out = shuffled.extend(torch.from_numpy(slots), *_stack(rows), mask)
        back = np.argsort(slots)
        in_order = [rows[i] for i in back]
        expected = ordered.extend(torch.arange(4), *_stack(in_order), mask[back])
        for slot in range(4):
            reference = PolicyOutput(
                expected.dist.select(torch.tensor([slot])), expected.values[[slot]]
            )
            _assert_same(out, int(back[slot]), reference, action)
    assert shuffled.lengths.tolist() == ordered.lengths.tolist() == [4, 4, 4, 4]
    torch.testing.assert_close(shuffled._kv, ordered._kv, atol=0, rtol=0)


def test_lengths_track_extends_and_clears() -> None:
    policy = _policy("cartpole")
    contexts = SlotContexts(policy, num_slots=4, capacity=6)
    stream = Stream("cartpole", policy, seed=0)

    def extend(slots: list[int], steps: int) -> PolicyOutput:
        return contexts.extend(
            torch.tensor(slots), *_stack([[stream.next() for _ in range(steps)] for _ in slots])
        )

    assert contexts.lengths.tolist() == [0, 0, 0, 0]
    extend([2, 0], 3)
    extend([0], 1)
    assert contexts.lengths.tolist() == [4, 0, 3, 0]
    contexts.clear(torch.tensor([0]))
    assert contexts.lengths.tolist() == [0, 0, 3, 0]
    extend([3, 0, 2], 2)
    assert contexts.lengths.tolist() == [2, 0, 5, 2]
    contexts.clear()
    assert contexts.lengths.tolist() == [0, 0, 0, 0]


def test_cleared_slot_forgets_its_old_context() -> None:
    """After ``clear`` a slot acts as if it never held anything."""
    policy = _policy("dict-discrete")
    stream = Stream("dict-discrete", policy, seed=4)
    old = [stream.next()._replace(start=False) for _ in range(4)]
    new = [stream.next()._replace(start=False) for _ in range(2)]
    used = SlotContexts(policy, num_slots=2, capacity=8)
    used.extend(torch.tensor([1]), *_stack([old]))
    used.clear(torch.tensor([1]))
    fresh = SlotContexts(policy, num_slots=2, capacity=8)
    after_clear = used.extend(torch.tensor([1]), *_stack([new]))
    from_empty = fresh.extend(torch.tensor([1]), *_stack([new]))
    torch.testing.assert_close(after_clear.values, from_empty.values, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(
        after_clear.dist.log_probs, from_empty.dist.log_probs, atol=TOLERANCE, rtol=0
    )


def test_episode_start_hides_earlier_tokens() -> None:
    """A token flagged as a start sees only itself, whatever the slot held before."""
    policy = _policy("image-hybrid")
    stream = Stream("image-hybrid", policy, seed=5)
    before = [stream.next()._replace(start=False) for _ in range(3)]
    begin = stream.next()._replace(start=True)
    contexts = SlotContexts(policy, num_slots=3, capacity=8)
    contexts.extend(torch.tensor([2]), *_stack([before]))
    out = contexts.extend(torch.tensor([2]), *_stack([[begin]]))
    alone = _reference(policy, [begin], None)
    torch.testing.assert_close(out.values, alone.values, atol=TOLERANCE, rtol=0)
    with_history = _reference(policy, [*before, begin._replace(start=False)], None)
    assert not torch.allclose(out.values, with_history.values, atol=1e-3)


def test_attention_with_per_row_distances() -> None:
    """A ``[B, Tq, Tk]`` distance gives each row what its own ``[Tq, Tk]`` distance gives."""
    torch.manual_seed(0)
    attention = CausalSelfAttention(d_model=16, num_heads=4, dropout=0.0, max_distance=6).eval()
    with torch.no_grad():
        attention.distance_bias.normal_()
    x = torch.randn(3, 4, 16)
    allowed = segment_mask(torch.tensor([[True, False, False, False]] * 3))
    shared = distances(4, 6)
    per_row = torch.stack([shared, (shared * 2).clamp(max=5), (shared + 1).clamp(max=5)])
    with torch.no_grad():
        same, _ = attention(x, allowed, shared.expand(3, -1, -1))
        expected, _ = attention(x, allowed, shared)
        torch.testing.assert_close(same, expected, atol=1e-6, rtol=0)
        mixed, _ = attention(x, allowed, per_row)
        for row in range(3):
            alone, _ = attention(x[row : row + 1], allowed[row : row + 1], per_row[row])
            torch.testing.assert_close(mixed[row : row + 1], alone, atol=1e-6, rtol=0)
    assert not torch.allclose(mixed[1], expected[1], atol=1e-4)


# ------------------------------------------------------------------ invalid calls
def _valid_call(policy: GPTPolicy, batch: int = 2, steps: int = 1) -> dict[str, Any]:
    stream = Stream("dict-discrete", policy, seed=6)
    obs, starts, control = _stack([[stream.next() for _ in range(steps)] for _ in range(batch)])
    return {
        "slots": torch.arange(batch),
        "obs": obs,
        "starts": starts,
        "control": control,
        "action_mask": torch.ones(batch, policy.action_codec.num_logits, dtype=torch.bool),
    }


def _obs_with(obs: ObsTensors, **changes: torch.Tensor) -> ObsTensors:
    return obs._replace(**changes)


INVALID: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "duplicate slots": lambda c: {**c, "slots": torch.tensor([1, 1])},
    "slot out of range": lambda c: {**c, "slots": torch.tensor([0, 3])},
    "negative slot": lambda c: {**c, "slots": torch.tensor([-1, 0])},
    "slots not 1-D": lambda c: {**c, "slots": torch.tensor([[0, 1]])},
    "float slots": lambda c: {**c, "slots": torch.tensor([0.0, 1.0])},
    "no slots": lambda c: {
        **c,
        "slots": torch.zeros(0, dtype=torch.long),
        "starts": c["starts"][:0],
        "control": c["control"][:0],
    },
    "starts of other batch": lambda c: {**c, "starts": c["starts"][:1]},
    "starts not 2-D": lambda c: {**c, "starts": c["starts"][:, 0]},
    "starts not bool": lambda c: {**c, "starts": c["starts"].long()},
    "zero new tokens": lambda c: {
        **c,
        "starts": c["starts"][:, :0],
        "control": c["control"][:, :0],
        "obs": ObsTensors(c["obs"].vector[:, :0], c["obs"].discrete[:, :0], []),
    },
    "control of other length": lambda c: {**c, "control": torch.ones(2, 2)},
    "vector of other batch": lambda c: {
        **c,
        "obs": _obs_with(c["obs"], vector=c["obs"].vector[:1]),
    },
    "vector of other width": lambda c: {
        **c,
        "obs": _obs_with(c["obs"], vector=c["obs"].vector[..., :2]),
    },
    "discrete of other length": lambda c: {
        **c,
        "obs": _obs_with(c["obs"], discrete=c["obs"].discrete.repeat(1, 2, 1)),
    },
    "unexpected image": lambda c: {
        **c,
        "obs": c["obs"]._replace(images=[torch.zeros(2, 1, 8, 8, 3, dtype=torch.uint8)]),
    },
    "action mask of other width": lambda c: {
        **c,
        "action_mask": torch.ones(2, 3, dtype=torch.bool),
    },
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_extend_raises_and_changes_nothing(name: str) -> None:
    policy = _policy("dict-discrete")
    contexts = SlotContexts(policy, num_slots=3, capacity=4)
    contexts.extend(**_valid_call(policy))
    before = contexts.lengths.clone()
    with pytest.raises(ValueError):
        contexts.extend(**INVALID[name](_valid_call(policy)))
    assert torch.equal(contexts.lengths, before)


def test_extend_past_capacity_raises_and_changes_nothing() -> None:
    policy = _policy("dict-discrete")
    contexts = SlotContexts(policy, num_slots=3, capacity=4)
    contexts.extend(**_valid_call(policy, batch=2, steps=3))
    with pytest.raises(ValueError, match="capacity"):
        contexts.extend(**_valid_call(policy, batch=2, steps=2))
    assert contexts.lengths.tolist() == [3, 3, 0]
    # A slot with room takes its tokens; the full ones take exactly one more.
    contexts.extend(**{**_valid_call(policy, batch=1, steps=4), "slots": torch.tensor([2])})
    contexts.extend(**_valid_call(policy, batch=2, steps=1))
    assert contexts.lengths.tolist() == [4, 4, 4]


def test_invalid_construction_and_clear_raise() -> None:
    policy = _policy("cartpole")
    with pytest.raises(ValueError):
        SlotContexts(policy, num_slots=0, capacity=4)
    with pytest.raises(ValueError):
        SlotContexts(policy, num_slots=2, capacity=0)
    contexts = SlotContexts(policy, num_slots=2, capacity=4)
    with pytest.raises(ValueError):
        contexts.clear(torch.tensor([2]))
