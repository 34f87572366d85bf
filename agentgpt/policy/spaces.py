"""Translate Gymnasium spaces into the fixed tensor layout the policy works on.

The transformer needs one token per timestep whatever the observation space is, and one
flat set of distribution parameters whatever the action space is. These codecs walk a
space once, in a fixed order (Dict keys in the space's order, Tuple items in order), and
split every observation into three groups that each have one encoder:

* ``vector``: every non-image ``Box``, flattened and concatenated (float32). This is the
  part that running normalization applies to.
* ``discrete``: every ``Discrete`` / ``MultiDiscrete`` / ``MultiBinary`` component as a
  zero-based index (int64), with its cardinality in ``discrete_sizes``.
* ``images``: every ``uint8`` ``Box`` of shape HxWxC (or HxW), kept as uint8.

Actions are split the same way into categorical components and continuous dimensions.
Bounded ``Box`` actions live in a normalized ``[-1, 1]`` space inside the policy and are
scaled to the env's bounds only when handed to the env.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces


def _is_image(space: spaces.Space) -> bool:
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and (len(space.shape) == 3 or len(space.shape) == 2)
        and min(space.shape[:2]) >= 4
    )


@dataclass
class ObsParts:
    """One batch of encoded observations; every array shares the same leading dims."""

    vector: np.ndarray
    discrete: np.ndarray
    images: list[np.ndarray] = field(default_factory=list)


class ObservationCodec:
    """Splits observations of ``space`` into the vector / discrete / image groups."""

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        self.vector_dim = 0
        self.discrete_sizes: list[int] = []
        self.image_shapes: list[tuple[int, int, int]] = []
        self._walk_layout(space)
        if self.vector_dim == 0 and not self.discrete_sizes and not self.image_shapes:
            raise ValueError(f"observation space {space} has no usable component")

    @property
    def is_flat_vector(self) -> bool:
        """True when observations are one plain vector (the ONNX export case)."""
        return not self.discrete_sizes and not self.image_shapes

    def _walk_layout(self, space: spaces.Space) -> None:
        if isinstance(space, spaces.Dict):
            for sub in space.spaces.values():
                self._walk_layout(sub)
        elif isinstance(space, spaces.Tuple):
            for sub in space.spaces:
                self._walk_layout(sub)
        elif _is_image(space):
            shape = space.shape if len(space.shape) == 3 else (*space.shape, 1)
            self.image_shapes.append(tuple(int(s) for s in shape))
        elif isinstance(space, spaces.Box):
            self.vector_dim += int(np.prod(space.shape, dtype=np.int64))
        elif isinstance(space, spaces.Discrete):
            self.discrete_sizes.append(int(space.n))
        elif isinstance(space, spaces.MultiDiscrete):
            self.discrete_sizes.extend(int(n) for n in np.asarray(space.nvec).reshape(-1))
        elif isinstance(space, spaces.MultiBinary):
            self.discrete_sizes.extend([2] * int(np.prod(space.shape, dtype=np.int64)))
        else:
            raise TypeError(f"unsupported observation space: {space!r}")

    def encode(self, obs: Any, batch: int) -> ObsParts:
        """Encode a batch of ``batch`` observations (as a vector env returns them)."""
        vectors: list[np.ndarray] = []
        discretes: list[np.ndarray] = []
        images: list[np.ndarray] = []
        self._encode(self.space, obs, batch, vectors, discretes, images)
        vector = (
            np.concatenate(vectors, axis=1).astype(np.float32, copy=False)
            if vectors
            else np.zeros((batch, 0), np.float32)
        )
        discrete = (
            np.concatenate(discretes, axis=1).astype(np.int64, copy=False)
            if discretes
            else np.zeros((batch, 0), np.int64)
        )
        return ObsParts(vector, discrete, images)

    def _encode(self, space, obs, batch, vectors, discretes, images) -> None:
        if isinstance(space, spaces.Dict):
            for key, sub in space.spaces.items():
                self._encode(sub, obs[key], batch, vectors, discretes, images)
        elif isinstance(space, spaces.Tuple):
            for sub, part in zip(space.spaces, obs, strict=True):
                self._encode(sub, part, batch, vectors, discretes, images)
        elif _is_image(space):
            arr = np.asarray(obs, dtype=np.uint8)
            images.append(arr.reshape(batch, *self.image_shapes[len(images)]))
        elif isinstance(space, spaces.Box):
            vectors.append(np.asarray(obs, dtype=np.float32).reshape(batch, -1))
        elif isinstance(space, spaces.Discrete):
            discretes.append((np.asarray(obs, dtype=np.int64) - int(space.start)).reshape(batch, 1))
        elif isinstance(space, spaces.MultiDiscrete):
            start = np.asarray(space.start, dtype=np.int64)
            discretes.append((np.asarray(obs, dtype=np.int64) - start).reshape(batch, -1))
        else:  # MultiBinary
            discretes.append(np.asarray(obs, dtype=np.int64).reshape(batch, -1))


class ActionCodec:
    """Maps an action space to categorical components plus normalized continuous dims."""

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        self.discrete_sizes: list[int] = []
        lows: list[np.ndarray] = []
        highs: list[np.ndarray] = []
        self._walk_layout(space, lows, highs)
        self.continuous_dim = int(sum(len(low) for low in lows))
        self.low = np.concatenate(lows).astype(np.float64) if lows else np.zeros(0)
        self.high = np.concatenate(highs).astype(np.float64) if highs else np.zeros(0)
        #: Continuous dims with finite bounds on both sides are squashed into them.
        self.bounded = np.isfinite(self.low) & np.isfinite(self.high)
        self.num_logits = int(sum(self.discrete_sizes))
        if not self.discrete_sizes and self.continuous_dim == 0:
            raise ValueError(f"action space {space} has no usable component")

    @property
    def num_discrete(self) -> int:
        return len(self.discrete_sizes)

    def _walk_layout(self, space, lows, highs) -> None:
        if isinstance(space, spaces.Dict):
            for sub in space.spaces.values():
                self._walk_layout(sub, lows, highs)
        elif isinstance(space, spaces.Tuple):
            for sub in space.spaces:
                self._walk_layout(sub, lows, highs)
        elif isinstance(space, spaces.Discrete):
            self.discrete_sizes.append(int(space.n))
        elif isinstance(space, spaces.MultiDiscrete):
            self.discrete_sizes.extend(int(n) for n in np.asarray(space.nvec).reshape(-1))
        elif isinstance(space, spaces.MultiBinary):
            self.discrete_sizes.extend([2] * int(np.prod(space.shape, dtype=np.int64)))
        elif isinstance(space, spaces.Box):
            lows.append(np.asarray(space.low, dtype=np.float64).reshape(-1))
            highs.append(np.asarray(space.high, dtype=np.float64).reshape(-1))
        else:
            raise TypeError(f"unsupported action space: {space!r}")

    def to_env(self, discrete: np.ndarray, continuous: np.ndarray) -> Any:
        """Turn policy outputs (indices ``[N, Nd]``, normalized floats ``[N, Dc]``) into a
        batch of env actions in the structure of the space."""
        batch = discrete.shape[0] if self.num_discrete else continuous.shape[0]
        cont = np.asarray(continuous, dtype=np.float64)
        if self.continuous_dim:
            scaled = cont.copy()
            b = self.bounded
            squashed = np.clip(cont[:, b], -1.0, 1.0)
            scaled[:, b] = self.low[b] + (squashed + 1.0) * 0.5 * (self.high[b] - self.low[b])
            cont = scaled
        cursor = [0, 0]
        return self._build(self.space, np.asarray(discrete), cont, batch, cursor)

    def _build(self, space, disc, cont, batch, cursor):
        if isinstance(space, spaces.Dict):
            return {k: self._build(s, disc, cont, batch, cursor) for k, s in space.spaces.items()}
        if isinstance(space, spaces.Tuple):
            return tuple(self._build(s, disc, cont, batch, cursor) for s in space.spaces)
        if isinstance(space, spaces.Discrete):
            out = disc[:, cursor[0]].astype(space.dtype) + space.start
            cursor[0] += 1
            return out
        if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
            n = int(np.prod(space.shape, dtype=np.int64))
            part = disc[:, cursor[0] : cursor[0] + n].reshape(batch, *space.shape)
            cursor[0] += n
            if isinstance(space, spaces.MultiDiscrete):
                part = part + np.asarray(space.start)
            return part.astype(space.dtype)
        n = int(np.prod(space.shape, dtype=np.int64))
        part = cont[:, cursor[1] : cursor[1] + n].reshape(batch, *space.shape)
        cursor[1] += n
        return np.clip(part, space.low, space.high).astype(space.dtype)

    def sample_random(
        self, rng: np.random.Generator, batch: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniformly random actions in policy layout: what control value 0.0 plays.

        Categorical components draw uniformly among the actions ``mask`` allows;
        bounded continuous dims draw uniformly in ``[-1, 1]`` (the whole env range),
        unbounded ones from a standard normal.
        """
        disc = np.zeros((batch, self.num_discrete), np.int64)
        offset = 0
        for i, n in enumerate(self.discrete_sizes):
            if mask is None:
                disc[:, i] = rng.integers(0, n, size=batch)
            else:
                allowed = mask[:, offset : offset + n].astype(np.float64)
                allowed[allowed.sum(axis=1) == 0] = 1.0
                cum = np.cumsum(allowed, axis=1)
                pick = rng.random(batch) * cum[:, -1]
                disc[:, i] = np.minimum((cum <= pick[:, None]).sum(axis=1), n - 1)
            offset += n
        cont = np.where(
            self.bounded,
            rng.uniform(-1.0, 1.0, size=(batch, self.continuous_dim)),
            rng.standard_normal((batch, self.continuous_dim)),
        ).astype(np.float32)
        return disc, cont

    def mix_random(
        self,
        rng: np.random.Generator,
        discrete: np.ndarray,
        continuous: np.ndarray,
        control: float | np.ndarray,
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """The control mix, in place: each row's action is replaced by a uniformly random
        one (:meth:`sample_random`) with probability ``1 - control``. Returns which rows
        were replaced. Random actions are drawn only when some row needs one."""
        batch = discrete.shape[0]
        use_random = rng.random(batch) >= control
        if use_random.any():
            r_disc, r_cont = self.sample_random(rng, batch, mask)
            discrete[use_random] = r_disc[use_random]
            continuous[use_random] = r_cont[use_random]
        return use_random

    def mask_from_info(self, info: dict, batch: int) -> np.ndarray | None:
        """Read ``info["action_mask"]`` of a vector env into ``bool[N, num_logits]``.

        Envs that supply no mask allow every action. Returns None when no env did.
        """
        if "action_mask" not in info or not self.discrete_sizes:
            return None
        raw = info["action_mask"]
        present = np.asarray(info.get("_action_mask", np.ones(batch, bool)), dtype=bool)
        mask = np.ones((batch, self.num_logits), dtype=bool)
        for i in np.flatnonzero(present):
            row = np.asarray(raw[i]).reshape(-1).astype(bool)
            if row.size != self.num_logits:
                raise ValueError(
                    f"info['action_mask'] has {row.size} entries; the action space has "
                    f"{self.num_logits} discrete choices"
                )
            mask[i] = row
        return mask
