"""Answer bodies: the builders the env server calls and the readers clients call.

Values inside answers (observations, actions, spaces) are already in their wire form on
both sides; :mod:`agentgpt.wire` converts them. The step and reset readers return plain
tuples because a client calls them on every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium

from agentgpt.protocol.fields import (
    ACTION_SPACE,
    AGENTS,
    AUTORESET_MODE,
    CLOSED,
    ENV_KEY,
    INCARNATION,
    INFO,
    NUM_ENVS,
    OBSERVATION,
    OBSERVATION_SPACE,
    REWARD,
    STATUS,
    TERMINATED,
    TRUNCATED,
    VERSION,
)
from agentgpt.wire import space_from_wire

__all__ = [
    "MadeAnswer",
    "action_space_answer",
    "closed_answer",
    "health_answer",
    "health_incarnation",
    "made_answer",
    "observation_space_answer",
    "read_env_key",
    "read_made",
    "read_reset",
    "read_step",
    "reset_answer",
    "step_answer",
]

# ---------------------------------------------------------------- /make and /make_vec


def made_answer(
    *,
    env_key: str,
    num_envs: int,
    observation_space: Any,
    action_space: Any,
    agents: list[str] | None,
    autoreset_mode: str,
    incarnation: str,
) -> dict[str, Any]:
    """The answer of ``/make`` and ``/make_vec``. Spaces are wire spaces: one sub-env's
    for a vector env, a list in ``agents`` order for a multi-agent env."""
    return {
        ENV_KEY: env_key,
        NUM_ENVS: num_envs,
        OBSERVATION_SPACE: observation_space,
        ACTION_SPACE: action_space,
        AGENTS: agents,
        AUTORESET_MODE: autoreset_mode,
        INCARNATION: incarnation,
    }


@dataclass(frozen=True)
class MadeAnswer:
    """A ``/make`` or ``/make_vec`` answer with its spaces rebuilt.

    ``agents`` is ``None`` for single-agent and vector envs; for a multi-agent env it
    lists the agents and the two spaces are lists in that order.
    """

    env_key: str
    num_envs: int
    agents: list[str] | None
    observation_space: gymnasium.Space | list[gymnasium.Space]
    action_space: gymnasium.Space | list[gymnasium.Space]
    autoreset_mode: str
    #: ``None`` from a server that does not report one.
    incarnation: str | None


def read_env_key(answer: dict[str, Any]) -> str:
    """The ``env_key`` of a ``/make`` or ``/make_vec`` answer, alone: a client that must
    free the env whatever else the answer holds reads it first."""
    return str(answer[ENV_KEY])


def read_made(answer: dict[str, Any]) -> MadeAnswer:
    """The :class:`MadeAnswer` in a ``/make`` or ``/make_vec`` answer."""
    agents = answer.get(AGENTS)
    if agents is None:
        observation_space: Any = space_from_wire(answer[OBSERVATION_SPACE])
        action_space: Any = space_from_wire(answer[ACTION_SPACE])
    else:
        agents = [str(agent) for agent in agents]
        observation_space = [space_from_wire(s) for s in answer[OBSERVATION_SPACE]]
        action_space = [space_from_wire(s) for s in answer[ACTION_SPACE]]
    return MadeAnswer(
        env_key=read_env_key(answer),
        num_envs=int(answer[NUM_ENVS]),
        agents=agents,
        observation_space=observation_space,
        action_space=action_space,
        autoreset_mode=answer[AUTORESET_MODE],
        incarnation=answer.get(INCARNATION),
    )


# ---------------------------------------------------------------- /reset and /step


def reset_answer(observation: Any, info: Any) -> dict[str, Any]:
    """The answer of ``/reset``."""
    return {OBSERVATION: observation, INFO: info}


def read_reset(answer: dict[str, Any]) -> tuple[Any, Any]:
    """``(observation, info)`` of a ``/reset`` answer, in wire form."""
    return answer[OBSERVATION], answer.get(INFO)


def step_answer(
    observation: Any, reward: Any, terminated: Any, truncated: Any, info: Any
) -> dict[str, Any]:
    """The answer of ``/step``: scalars for a single env, arrays over sub-envs for a vector
    env, lists in ``agents`` order for a multi-agent env."""
    return {
        OBSERVATION: observation,
        REWARD: reward,
        TERMINATED: terminated,
        TRUNCATED: truncated,
        INFO: info,
    }


def read_step(answer: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """``(observation, reward, terminated, truncated, info)`` of a ``/step`` answer, in
    wire form."""
    return (
        answer[OBSERVATION],
        answer[REWARD],
        answer[TERMINATED],
        answer[TRUNCATED],
        answer.get(INFO),
    )


# ---------------------------------------------------------------- the other routes


def closed_answer(env_key: str) -> dict[str, Any]:
    """The answer of ``/close``."""
    return {CLOSED: True, ENV_KEY: env_key}


def action_space_answer(space: Any) -> dict[str, Any]:
    """The answer of ``GET /action_space`` (a wire space, or a list of them)."""
    return {ACTION_SPACE: space}


def observation_space_answer(space: Any) -> dict[str, Any]:
    """The answer of ``GET /observation_space`` (a wire space, or a list of them)."""
    return {OBSERVATION_SPACE: space}


def health_answer(version: str, incarnation: str) -> dict[str, Any]:
    """The answer of ``GET /health``."""
    return {STATUS: "ok", VERSION: version, INCARNATION: incarnation}


def health_incarnation(answer: dict[str, Any]) -> str | None:
    """The server's incarnation in a ``/health`` answer (``None`` if it reports none)."""
    return answer.get(INCARNATION)
