"""``EnvSpec``: which env a run trains on, as the trainer and the trained agent both need it.

The trainer makes its local envs from it, and an agent makes fresh envs of the same kind
to be evaluated on, long after training; so it lives in the kernel, below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EnvSpec"]


@dataclass(frozen=True)
class EnvSpec:
    """A Gymnasium id (or a PettingZoo name an env server registers) and the keyword
    arguments of its constructor."""

    env_id: str = "CartPole-v1"
    #: Keyword arguments for the env's constructor (``gymnasium.make`` / ``make_vec``).
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "env_kwargs": dict(self.env_kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        return cls(str(data["env_id"]), dict(data.get("env_kwargs") or {}))
