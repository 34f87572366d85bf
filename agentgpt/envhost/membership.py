"""Membership checks for actions read from the wire, cheaper than ``space.contains``.

Every step's action is checked against the env's action space before the env sees it,
so that a bad action is the client's 422 and not the env's crash. Gymnasium's
``contains`` is written for any input (lists, other dtypes, other shapes) and rebuilds
its bounds on every call; for a 64-env vector env's ``MultiDiscrete`` that is several
microseconds per step. An action read by :func:`agentgpt.wire.value_from_wire` already
has the space's exact dtype and shape (an array) or is a scalar of its dtype
(``Discrete``), so for the plain spaces only the bounds are left to check, against
bounds computed once. Any other space (subclasses included, which may define
membership their own way) keeps its own ``contains``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

__all__ = ["membership"]


def membership(space: gymnasium.Space) -> Callable[[Any], bool]:
    """``space.contains`` for values as ``value_from_wire`` reads them for ``space``."""
    kind = type(space)
    if kind is spaces.Discrete:
        low = int(space.start)
        end = low + int(space.n)
        return lambda value: low <= int(value) < end
    if kind is spaces.MultiDiscrete:
        return _within(space.start, space.start + (space.nvec - 1))
    if kind is spaces.Box:
        return _within(space.low, space.high)
    return space.contains


def _within(low: np.ndarray, high: np.ndarray) -> Callable[[Any], bool]:
    def contains(value: Any) -> bool:
        return bool((value >= low).all() and (value <= high).all())

    return contains
