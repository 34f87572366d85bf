"""A CartPole whose every step sleeps first: a simulator slower than its peers.

Registered on one env server by ``benchmarks/fleet_throughput.py`` under the name
``CartPole-v1``, so a fleet asking every host for CartPole-v1 gets one slow host.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium

#: Seconds each env step sleeps.
STEP_DELAY = 0.005


class SlowStep(gymnasium.Wrapper):
    """Sleeps ``delay`` seconds before every step (the CPU stays free, as for an env
    waiting on a physics engine or a game process)."""

    def __init__(self, env: gymnasium.Env, delay: float = STEP_DELAY) -> None:
        super().__init__(env)
        self.delay = delay

    def step(self, action: Any) -> Any:
        time.sleep(self.delay)
        return self.env.step(action)


def slow_cartpole(**kwargs: Any) -> gymnasium.Env:
    """The env-server factory: CartPole-v1 with a 5 ms sleep per step."""
    return SlowStep(gymnasium.make("CartPole-v1", **kwargs))
