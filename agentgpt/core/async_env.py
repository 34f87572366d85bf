"""The asynchronous vector-env protocol the trainer collects from.

EnvPool's lesson: a synchronous vector env is the asynchronous case where every env
answers every time. So the trainer has one collector, written against this protocol, and
every env source implements it: :class:`~agentgpt.remote.fleet.Fleet` (many env servers,
answers arrive as hosts respond) and the local adapter in :mod:`agentgpt.core.local` (a
Gymnasium vector env, every env answers at once).

The contract:

* ``async_reset(seed)`` starts every env; its first observations arrive through ``recv``.
* ``recv()`` returns a :class:`~agentgpt.core.step_batch.StepBatch` of the slots with news
  (possibly empty when ``timeout`` passes). A slot appears at most once per batch.
* ``send(actions, env_ids)`` acts for exactly the live rows of the last batches (rows not
  ``cut``), in the order of ``env_ids``; ``actions`` is a batch of
  ``single_action_space`` values in Gymnasium's vector layout.
* A row whose ``cut`` flag is set ends its slot's trajectory: no action is expected for
  it, and the slot's next row starts a new episode.
* When no env answers for longer than the source allows, ``recv`` raises
  :class:`~agentgpt.core.errors.EnvsUnavailable`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium

from agentgpt.core.step_batch import StepBatch

__all__ = ["AsyncVectorEnv", "is_async_vector_env"]


@runtime_checkable
class AsyncVectorEnv(Protocol):
    """What the trainer needs from an env source (see the module doc)."""

    num_envs: int
    single_observation_space: gymnasium.Space
    single_action_space: gymnasium.Space

    def async_reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> None: ...

    def recv(self, timeout: float | None = None, *, max_wait: float = 0.0) -> StepBatch: ...

    def send(self, actions: Any, env_ids: Any) -> None: ...

    def close(self) -> None: ...


def is_async_vector_env(envs: Any) -> bool:
    """Whether ``envs`` speaks the protocol (a Fleet does; a Gymnasium VectorEnv does not)."""
    return all(callable(getattr(envs, name, None)) for name in ("async_reset", "recv", "send"))
