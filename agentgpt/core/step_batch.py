"""``StepBatch``: what one ``recv()`` of an asynchronous vector env hands over.

Every env source the trainer collects from (a local vector env, a fleet of env servers)
answers in this one shape, so the collector does not care where envs run. A batch holds
one row per slot with news; a slot appears at most once per batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium
import numpy as np

from agentgpt.core.batching import zeros

__all__ = ["StepBatch", "empty_batch"]


class StepBatch(NamedTuple):
    """Rows of the slots with news; every array has one entry per row."""

    #: int64: the slots the rows belong to (each at most once).
    env_ids: np.ndarray
    #: bool: an observation came for the slot (False: an absent agent, or a cut).
    present: np.ndarray
    #: Batched values of ``single_observation_space``; rows without one are zero-filled.
    obs: Any
    #: float64: reward of the transition the slot's last action caused (0 if none).
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    #: bool: the slot's last action will never be answered (host down, env error,
    #: server restarted): its trajectory ends here and no action is expected for it.
    cut: np.ndarray
    #: Gymnasium vector-style info of these rows (``{key: values, "_key": mask}``).
    info: dict[str, Any]


def empty_batch(observation_space: gymnasium.Space) -> StepBatch:
    """A batch of no rows (what ``recv`` returns when its timeout passes without news)."""
    return StepBatch(
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.bool_),
        zeros(observation_space, 0),
        np.zeros(0, dtype=np.float64),
        np.zeros(0, dtype=np.bool_),
        np.zeros(0, dtype=np.bool_),
        np.zeros(0, dtype=np.bool_),
        {},
    )
