"""``ModelConfig``: the shape of an agent's GPT policy.

It belongs to the agent, not the trainer: a saved agent is rebuilt from it, and its
context length K is what the agent acts from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """A small transformer (2 layers, d_model 64) acting from 16-step contexts by default."""

    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    dropout: float = 0.0
    #: The longest context the model can take (its relative-position range).
    max_input_states: int = 16
    #: The context length K the agent acts from (at most ``max_input_states``).
    num_input_states: int = 16

    def __post_init__(self) -> None:
        if self.num_input_states > self.max_input_states:
            raise ValueError("num_input_states must not exceed max_input_states")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**data)

    def policy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~agentgpt.policy.model.GPTPolicy` besides spaces."""
        return self.to_dict()
