"""Learning what a fleet serves before it makes its envs: the env's kind and spaces.

Single-agent envs are made as ``/make_vec`` vector envs, multi-agent ones as separate
``/make`` envs (servers refuse to vectorize them), so the fleet must know the kind first.
It makes one env on the first host that answers, reads ``agents`` (``null`` for a
single-agent env) and the spaces, and closes it. Hosts that do not answer are left to be
retried in the background; only when none answers within ``fleet_timeout`` does building
the fleet fail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium

from agentgpt.protocol import routes
from agentgpt.protocol.answers import read_env_key, read_made
from agentgpt.protocol.requests import make_request
from agentgpt.remote.fleet.faults import Fault, FleetDownError, classify
from agentgpt.remote.fleet.hosts import Backoff
from agentgpt.remote.fleet.streams import Endpoint, close_quietly

__all__ = ["Discovery", "discover"]


@dataclass(frozen=True)
class Discovery:
    """The env's kind and spaces, and the hosts that did not answer (by index: reason)."""

    multi_agent: bool
    agents: list[str] | None
    observation_space: gymnasium.Space
    action_space: gymnasium.Space
    unreachable: dict[int, str]


def discover(
    endpoints: Sequence[Endpoint],
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    *,
    fleet_timeout: float,
    backoff: Backoff,
) -> Discovery:
    """Make (and close) one env on the first host that answers; see the module doc.

    Errors that no retry fixes (unknown env, wrong key, an env that cannot be built with
    ``env_kwargs``) are raised as they come; spaces that cannot be shared are a
    ``ValueError``.
    """
    started = time.monotonic()
    while True:
        unreachable: dict[int, str] = {}
        for index, endpoint in enumerate(endpoints):
            try:
                made = _make_and_close(endpoint, env_id, env_kwargs)
            except Exception as exc:
                if classify(exc) is not Fault.HOST:
                    raise
                unreachable[index] = endpoint.reason(exc)
                continue
            return _read(made, env_id, unreachable)
        waited = time.monotonic() - started
        delay = backoff.next_delay()
        if waited + delay > fleet_timeout:
            hosts = ", ".join(
                f"{endpoints[i].label} ({reason})" for i, reason in unreachable.items()
            )
            raise FleetDownError(f"no env host answered within {fleet_timeout:g} s: {hosts}")
        time.sleep(delay)


def _make_and_close(
    endpoint: Endpoint, env_id: str, env_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    transport = endpoint.transport()
    try:
        made = transport.post(routes.MAKE, make_request(env_id, env_kwargs=env_kwargs))
    finally:
        transport.close()
    close_quietly(endpoint, read_env_key(made))
    return made


def _read(answer: dict[str, Any], env_id: str, unreachable: dict[int, str]) -> Discovery:
    made = read_made(answer)
    agents = made.agents
    if agents is None:
        return Discovery(False, None, made.observation_space, made.action_space, unreachable)
    if not agents:
        raise ValueError(f"{env_id!r} is a multi-agent env without agents")
    observation_spaces = made.observation_space
    action_spaces = made.action_space
    for agent, obs_space, act_space in zip(agents, observation_spaces, action_spaces, strict=True):
        if obs_space != observation_spaces[0] or act_space != action_spaces[0]:
            raise ValueError(
                f"{env_id!r}: agent {agent!r} has observation space {obs_space} and action"
                f" space {act_space}, agent {agents[0]!r} has {observation_spaces[0]} and"
                f" {action_spaces[0]}; a fleet acts for every agent with one shared policy,"
                " so all agents must share one observation space and one action space"
            )
    return Discovery(True, agents, observation_spaces[0], action_spaces[0], unreachable)
