"""Training callbacks: code that runs after each update and each periodic evaluation.

A :class:`Callback` overrides the hooks it needs (as in Stable-Baselines3):

* :meth:`Callback.on_update`: after every PPO update, with the row written to
  ``metrics.csv``, the timing row and the run's progress;
* :meth:`Callback.on_evaluation`: after every periodic evaluation (``eval_every``
  updates, ``eval_episodes`` deterministic episodes on fresh local envs), with its
  returns;
* :meth:`Callback.on_end`: once when the run ends, however it ends.

Any event can ask the run to stop (``event.request_stop("reason")``): the run finishes
the current update's bookkeeping, saves a checkpoint (which resumes like any other) and
returns a :class:`~agentgpt.train.run.RunResult` with ``stopped_early`` set. That is how
an early-stopping rule or an Optuna pruner attaches::

    class Prune(Callback):
        def on_evaluation(self, event):
            trial.report(event.result.mean, event.update)
            if trial.should_prune():
                event.request_stop("pruned")

The metrics sinks (``metrics.csv``, TensorBoard, W&B, the progress view) are one such
callback, :class:`~agentgpt.train.reporting.Reporter`, which ``train()`` adds itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentgpt.agent.evaluate import EvalResult

__all__ = ["Callback", "CallbackList", "EvaluationEvent", "StopRequest", "UpdateEvent"]


class StopRequest:
    """Whether (and why) a callback asked the run to stop; shared by a run's events."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def __call__(self, reason: str = "stopped by a callback") -> None:
        if self.reason is None:
            self.reason = reason


@dataclass
class _Event:
    #: Updates done so far (the one just finished included).
    update: int
    #: Updates the run will do in all.
    num_updates: int
    global_step: int
    _stop: StopRequest = field(repr=False)

    @property
    def progress(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        return self.update / max(self.num_updates, 1)

    def request_stop(self, reason: str = "stopped by a callback") -> None:
        """Stop the run after this update, with a checkpoint (the first reason given
        is the one reported)."""
        self._stop(reason)


@dataclass
class UpdateEvent(_Event):
    """After an update: ``row`` is what ``metrics.csv`` gets (a pure function of the
    seed), ``timing`` what ``timing.csv`` gets (wall-clock, policy lag, hosts up)."""

    row: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    #: When several replicas train together: the digest of the weights they all hold
    #: after this update (None for a single process).
    weights_digest: str | None = None


@dataclass
class EvaluationEvent(_Event):
    """After a periodic evaluation of the current policy."""

    result: EvalResult | None = None


class Callback:
    """Override the hooks you need; each does nothing by default."""

    def on_update(self, event: UpdateEvent) -> None:
        """After every update."""

    def on_evaluation(self, event: EvaluationEvent) -> None:
        """After every periodic evaluation (``eval_every`` updates)."""

    def on_end(self) -> None:
        """Once, when the run ends (finished, stopped, interrupted or failed)."""


class CallbackList(Callback):
    """Several callbacks in order, as one."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_update(self, event: UpdateEvent) -> None:
        for callback in self.callbacks:
            callback.on_update(event)

    def on_evaluation(self, event: EvaluationEvent) -> None:
        for callback in self.callbacks:
            callback.on_evaluation(event)

    def on_end(self) -> None:
        errors = []
        for callback in self.callbacks:
            try:
                callback.on_end()
            except Exception as exc:  # every callback gets to close; the first error wins
                errors.append(exc)
        if errors:
            raise errors[0]
