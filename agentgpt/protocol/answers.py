"""Answer bodies: the builders the env server calls and the readers clients call.

Values inside answers (observations, actions, spaces) are already in their wire form on
both sides; :mod:`agentgpt.wire` converts them. The step and reset readers return plain
tuples because a client calls them on every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
    METADATA,
    NUM_ENVS,
    OBSERVATION,
    OBSERVATION_SPACE,
    RENDER,
    REWARD,
    STATUS,
    TERMINATED,
    TRUNCATED,
    TYPES,
    VERSION,
)
from agentgpt.wire import apply_types, space_from_wire

__all__ = [
    "MadeAnswer",
    "action_space_answer",
    "closed_answer",
    "health_answer",
    "health_incarnation",
    "made_answer",
    "metadata_to_wire",
    "observation_space_answer",
    "read_env_key",
    "read_made",
    "read_render",
    "read_reset",
    "read_step",
    "read_types",
    "render_answer",
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
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer of ``/make`` and ``/make_vec``. Spaces are wire spaces: one sub-env's
    for a vector env, a list in ``agents`` order for a multi-agent env. ``metadata`` is
    the env's, already through :func:`metadata_to_wire` (left out when ``None``)."""
    answer = {
        ENV_KEY: env_key,
        NUM_ENVS: num_envs,
        OBSERVATION_SPACE: observation_space,
        ACTION_SPACE: action_space,
        AGENTS: agents,
        AUTORESET_MODE: autoreset_mode,
        INCARNATION: incarnation,
    }
    if metadata is not None:
        answer[METADATA] = metadata
    return answer


_METADATA_SCALARS = (str, bool, int, type(None))


def _plain(value: Any) -> bool:
    """Whether ``value`` is plain data both encodings carry unchanged."""
    kind = type(value)
    if kind in _METADATA_SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def metadata_to_wire(metadata: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """An env's ``metadata`` as plain data: the entries with string keys whose values are
    strings, numbers, booleans, ``None`` or lists and maps of those, in their order.

    Tuples become lists; entries holding anything else (classes, enums, functions) are left
    out, and so are the keys in ``leave_out``.
    """
    if not isinstance(metadata, dict):
        return {}
    out = {}
    for key, value in metadata.items():
        if type(key) is not str or key in leave_out:
            continue
        if type(value) is tuple:
            value = list(value)
        if _plain(value):
            out[key] = value
    return out


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
    #: The env's metadata as plain data (``{}`` from a server that does not send it).
    metadata: dict[str, Any] = field(default_factory=dict)


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
        metadata=dict(metadata) if isinstance(metadata := answer.get(METADATA), dict) else {},
    )


# ---------------------------------------------------------------- /reset and /step


def reset_answer(
    observation: Any, info: Any, types: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The answer of ``/reset``. ``types`` maps field names to type notes
    (:mod:`agentgpt.wire.pytypes`); it is left out when ``None`` or empty."""
    answer = {OBSERVATION: observation, INFO: info}
    if types:
        answer[TYPES] = types
    return answer


def read_reset(answer: dict[str, Any]) -> tuple[Any, Any]:
    """``(observation, info)`` of a ``/reset`` answer, in wire form."""
    return answer[OBSERVATION], answer.get(INFO)


def step_answer(
    observation: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    info: Any,
    types: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer of ``/step``: scalars for a single env, arrays over sub-envs for a vector
    env, lists in ``agents`` order for a multi-agent env. ``types`` as for
    :func:`reset_answer`."""
    answer = {
        OBSERVATION: observation,
        REWARD: reward,
        TERMINATED: terminated,
        TRUNCATED: truncated,
        INFO: info,
    }
    if types:
        answer[TYPES] = types
    return answer


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


def read_types(answer: dict[str, Any]) -> dict[str, Any]:
    """The type notes of a ``/reset`` or ``/step`` answer, by field name (``{}`` when it
    has none: every value is what its plain or space-typed reading gives)."""
    types = answer.get(TYPES)
    return types if isinstance(types, dict) else {}


def apply_step_types(
    answer: dict[str, Any], observation: Any, reward: Any, terminated: Any, truncated: Any
) -> tuple[Any, Any, Any, Any, Any]:
    """A ``/step`` answer's values as a client read them, with the answer's type notes
    applied; the fifth item is the note for the info dict (None when there is none),
    which each client applies along with its own reading of infos."""
    types = read_types(answer)
    if not types:  # the usual case: every value is what its reading gives
        return observation, reward, terminated, truncated, None
    return (
        apply_types(observation, types.get(OBSERVATION)),
        apply_types(reward, types.get(REWARD)),
        apply_types(terminated, types.get(TERMINATED)),
        apply_types(truncated, types.get(TRUNCATED)),
        types.get(INFO),
    )


# ---------------------------------------------------------------- /render


def render_answer(output: Any, note: Any = None) -> dict[str, Any]:
    """The answer of ``/render``: ``output``, what the env's ``render()`` returned (a frame
    array, a string, a list or tuple of those, ``None``), and its type note
    (:mod:`agentgpt.wire.pytypes`), which gives a frame its dtype in JSON and a tuple of
    frames its tuple; ``types`` is left out when the note is ``None``."""
    answer: dict[str, Any] = {RENDER: output}
    if note is not None:
        answer[TYPES] = {RENDER: note}
    return answer


def read_render(answer: dict[str, Any]) -> Any:
    """What the env's ``render()`` returned, from a ``/render`` answer: its type note
    applied, so a frame is a NumPy array of the env's dtype in either encoding."""
    return apply_types(answer.get(RENDER), read_types(answer).get(RENDER))


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
