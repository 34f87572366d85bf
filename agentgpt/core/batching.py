"""Batched values of a space, in Gymnasium's vector layout, pieced together row by row.

A fleet hands the trainer whichever slots have news, so its batches are assembled from
the blocks of rows that different hosts answered with, and the actions it receives are
split back into one batch per remote env. Gymnasium's layout (``batch_space``) makes array
spaces (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``) one array with a
leading row axis, batches ``Dict`` and ``Tuple`` member by member, and turns every other
space into a tuple of single values. The helpers here follow that layout, and keep array
spaces on the NumPy fast path: a CartPole batch is one ``np.concatenate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, create_empty_array, iterate

__all__ = ["RowStore", "concat", "is_array_space", "rows_of", "single_values", "take", "zeros"]

_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def is_array_space(space: gymnasium.Space) -> bool:
    """Whether a batch of ``space`` values is one NumPy array with a leading row axis."""
    return isinstance(space, _ARRAY_SPACES)


def zeros(space: gymnasium.Space, n: int) -> Any:
    """``n`` placeholder rows: zeros for arrays, Gymnasium's empty values otherwise."""
    return create_empty_array(space, n, fn=np.zeros)


def concat(space: gymnasium.Space, parts: Sequence[Any]) -> Any:
    """The rows of several batches, one after the other."""
    if is_array_space(space):
        return np.concatenate(parts)
    if isinstance(space, spaces.Dict):
        return {key: concat(sub, [p[key] for p in parts]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(concat(sub, [p[i] for p in parts]) for i, sub in enumerate(space.spaces))
    return tuple(itertools.chain.from_iterable(parts))


def take(space: gymnasium.Space, batch: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of ``batch`` (a new batch)."""
    if is_array_space(space):
        return np.asarray(batch)[index]
    if isinstance(space, spaces.Dict):
        return {key: take(sub, batch[key], index) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(take(sub, batch[i], index) for i, sub in enumerate(space.spaces))
    return tuple(batch[int(i)] for i in index)


def rows_of(space: gymnasium.Space, batch: Any, n: int) -> Any:
    """``batch`` checked to hold ``n`` rows (array spaces: as an array)."""
    if is_array_space(space):
        array = np.asarray(batch)
        if array.ndim == 0 or array.shape[0] != n:
            raise ValueError(f"expected a batch of {n} values of {space}, got shape {array.shape}")
        return array
    count = _length(space, batch)
    if count is not None and count != n:
        raise ValueError(f"expected a batch of {n} values of {space}, got {count}")
    return batch


def single_values(space: gymnasium.Space, batch: Any, n: int) -> list[Any]:
    """The ``n`` single values in a batch, in row order."""
    return list(iterate(batch_space(space, n), batch))


def _length(space: gymnasium.Space, batch: Any) -> int | None:
    if is_array_space(space):
        return len(np.asarray(batch))
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            length = _length(sub, batch[key])
            if length is not None:
                return length
        return None
    if isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            length = _length(sub, batch[i])
            if length is not None:
                return length
        return None
    return len(batch)


class RowStore:
    """A batch of ``n`` rows that is filled in pieces: ``put`` some rows, read ``value()``.

    Used for the actions a remote env collects before its step goes out (they may arrive
    over several ``send`` calls) and for the last observation of every slot.
    """

    def __init__(self, space: gymnasium.Space, n: int, initial: Any = None) -> None:
        self.space = space
        self.n = n
        if initial is None:
            initial = zeros(space, n)
        if is_array_space(space):
            self._array: np.ndarray | None = np.array(initial, dtype=space.dtype)
            self._members: Any = None
        elif isinstance(space, spaces.Dict):
            self._array = None
            self._members = {
                key: RowStore(sub, n, initial[key]) for key, sub in space.spaces.items()
            }
        elif isinstance(space, spaces.Tuple):
            self._array = None
            self._members = tuple(
                RowStore(sub, n, initial[i]) for i, sub in enumerate(space.spaces)
            )
        else:
            self._array = None
            self._members = list(initial)

    def put(self, index: np.ndarray, batch: Any) -> None:
        """Set rows ``index`` to the rows of ``batch`` (as many rows as ``index``)."""
        if self._array is not None:
            self._array[index] = batch
        elif isinstance(self._members, dict):
            for key, member in self._members.items():
                member.put(index, batch[key])
        elif isinstance(self._members, tuple):
            for i, member in enumerate(self._members):
                member.put(index, batch[i])
        else:
            for row, value in zip(index.tolist(), batch, strict=True):
                self._members[row] = value

    def value(self) -> Any:
        """A copy of the whole batch, in Gymnasium's layout."""
        if self._array is not None:
            return self._array.copy()
        if isinstance(self._members, dict):
            return {key: member.value() for key, member in self._members.items()}
        if isinstance(self._members, tuple):
            return tuple(member.value() for member in self._members)
        return tuple(self._members)
