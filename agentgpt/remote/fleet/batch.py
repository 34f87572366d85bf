"""``FleetBatch``: what one ``Fleet.recv()`` hands over, and how it is put together.

A batch holds one row per slot with news: rows of the remote envs that answered since the
last call, in slot order, followed by rows for slots whose trajectories were cut. Slot
order whatever order the hosts answered in lets a trainer that acts on every slot at once
read and write its per-slot caches in place. A slot appears at most once per batch, so a
cut and the first observation after it always arrive in two different batches, in that
order; an answer that would collide with a row already in the batch waits for the next
one.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from agentgpt.core.batching import concat, zeros
from agentgpt.core.step_batch import StepBatch as FleetBatch
from agentgpt.core.step_batch import empty_batch
from agentgpt.remote.fleet.infos import merge_infos
from agentgpt.remote.fleet.streams import StreamRows

__all__ = ["BatchBuilder", "FleetBatch", "empty_batch"]


class BatchBuilder:
    """Collects the rows of one batch; ``taken`` marks slots that already have one."""

    def __init__(
        self, observation_space: gymnasium.Space, num_envs: int, exclude: np.ndarray | None
    ) -> None:
        self._space = observation_space
        self.taken = np.zeros(num_envs, dtype=np.bool_) if exclude is None else exclude.copy()
        #: Streams with an answer held back for the next batch (later ones wait too).
        self.blocked: set[int] = set()
        self.deferred: list[Any] = []
        self._blocks: list[tuple[np.ndarray, StreamRows]] = []
        self._cut: np.ndarray | None = None

    def add(self, env_ids: np.ndarray, rows: StreamRows) -> None:
        self._blocks.append((env_ids, rows))
        self.taken[env_ids[0] : env_ids[-1] + 1] = True

    def add_cuts(self, env_ids: np.ndarray) -> None:
        self._cut = env_ids

    def finish(self) -> FleetBatch | None:
        """The batch, or ``None`` when it has no rows."""
        blocks = sorted(self._blocks, key=lambda block: int(block[0][0]))
        cut = self._cut
        if cut is not None and cut.size:
            n = cut.size
            rows = StreamRows(
                np.zeros(n, dtype=np.bool_),
                zeros(self._space, n),
                np.zeros(n, dtype=np.float64),
                np.zeros(n, dtype=np.bool_),
                np.zeros(n, dtype=np.bool_),
                {},
            )
            blocks.append((cut, rows))
        if not blocks:
            return None
        cut_rows = 0 if cut is None else cut.size
        if len(blocks) == 1:
            env_ids, rows = blocks[0]
            total = env_ids.size
            return FleetBatch(
                env_ids.copy(),
                rows.present,
                rows.obs,
                rows.reward,
                rows.terminated,
                rows.truncated,
                np.full(total, cut_rows > 0, dtype=np.bool_),
                rows.info,
            )
        env_ids = np.concatenate([ids for ids, _ in blocks])
        cut_flags = np.zeros(env_ids.size, dtype=np.bool_)
        if cut_rows:
            cut_flags[-cut_rows:] = True
        infos = [(rows.info, ids.size) for ids, rows in blocks]
        return FleetBatch(
            env_ids,
            np.concatenate([rows.present for _, rows in blocks]),
            concat(self._space, [rows.obs for _, rows in blocks]),
            np.concatenate([rows.reward for _, rows in blocks]),
            np.concatenate([rows.terminated for _, rows in blocks]),
            np.concatenate([rows.truncated for _, rows in blocks]),
            cut_flags,
            merge_infos(infos) if any(info for info, _ in infos) else {},
        )
