"""The envhost's membership checks agree with Gymnasium's ``contains`` on wire values."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from agentgpt import wire
from agentgpt.envhost import errors
from agentgpt.envhost.adapters import parse_action
from agentgpt.envhost.membership import membership

SPACES = [
    spaces.Discrete(3),
    spaces.Discrete(4, start=-2),
    spaces.MultiDiscrete([2, 3, 4]),
    spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[-1, 0], [2, -3]]),
    spaces.MultiDiscrete(np.full(64, 2)),
    spaces.Box(-1.0, 1.0, (3,), np.float32),
    spaces.Box(np.array([0, -5]), np.array([10, 5]), dtype=np.int64),
    spaces.Box(-np.inf, np.inf, (2, 2), np.float64),
    spaces.Box(np.array([0.0, -np.inf]), np.array([np.inf, 1.0]), dtype=np.float32),
]


def _candidates(space: gymnasium.Space) -> list[Any]:
    """Samples, and values around and past the bounds, as the wire reads them."""
    space.seed(0)
    values = [space.sample() for _ in range(20)]
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        values += [start - 1, start, start + int(space.n) - 1, start + int(space.n)]
    elif isinstance(space, spaces.MultiDiscrete):
        values += [space.start - 1, space.start, space.start + space.nvec - 1]
        values.append(space.start + space.nvec)
        one_over = space.start.copy()
        one_over.flat[-1] += space.nvec.flat[-1]
        values.append(one_over)
    else:
        low = np.where(np.isfinite(space.low), space.low, -1e30)
        high = np.where(np.isfinite(space.high), space.high, 1e30)
        values += [low, high, low - 1, high + 1, np.full(space.shape, np.nan)]
    read = []
    for value in values:
        try:
            read.append(wire.value_from_wire(space, wire.value_to_wire(space, value)))
        except wire.WireError:
            continue  # not representable in the space's dtype: the wire refuses it first
    return read


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_membership_agrees_with_contains(space: gymnasium.Space) -> None:
    check = membership(space)
    assert check is not space.contains  # the fast check, not the fallback
    verdicts = [(check(value), bool(space.contains(value))) for value in _candidates(space)]
    assert all(fast == slow for fast, slow in verdicts)
    assert {slow for _, slow in verdicts} == {True, False}  # both verdicts were tried


def test_other_spaces_and_subclasses_keep_their_own_contains() -> None:
    class Even(spaces.Discrete):
        def contains(self, x: Any) -> bool:
            return super().contains(x) and int(x) % 2 == 0

    even = Even(4)
    assert membership(even) == even.contains
    assert parse_action(even, 2, contains=membership(even)) == 2
    with pytest.raises(errors.ApiError) as refused:
        parse_action(even, 1, contains=membership(even))
    assert refused.value.error_type == "invalid_action"
    binary = spaces.MultiBinary(3)
    assert membership(binary) == binary.contains


def test_parse_action_refuses_an_out_of_bounds_action_with_the_fast_check() -> None:
    space = spaces.MultiDiscrete(np.full(4, 2))
    check = membership(space)
    np.testing.assert_array_equal(parse_action(space, [0, 1, 1, 0], contains=check), [0, 1, 1, 0])
    with pytest.raises(errors.ApiError) as refused:
        parse_action(space, [0, 1, 2, 0], contains=check)
    assert refused.value.status == 422 and "is not in" in refused.value.message
