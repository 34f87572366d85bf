"""Reading the inference server's requests: every field checked, every error named.

Each parser takes a decoded body (JSON or MessagePack, or the Python values an in-process
caller hands over) and returns plain values, or raises a ``422 invalid_argument``
:class:`~agentgpt.service.errors.ApiError` whose message names the field and, for
per-agent fields, the agent (``observations[2] (agent 'p3'): expected shape (4,), got
shape (3,)``). Nothing here touches the model, so a bad request never reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from agentgpt import wire
from agentgpt.service.errors import ApiError, api_error

__all__ = [
    "MAX_SESSION_LENGTH",
    "AgentId",
    "describe_id",
    "invalid",
    "parse_agent_ids",
    "parse_bool",
    "parse_control",
    "parse_num_input_states",
    "parse_observations",
    "parse_session",
    "refuse_unknown_fields",
]

#: An agent id: a string or an integer (``"p1"`` and ``1`` are different agents).
AgentId = str | int
#: Longest accepted session name.
MAX_SESSION_LENGTH = 256
_MAX_ID_LENGTH = 256
_INT64 = (-(2**63), 2**63 - 1)


def invalid(message: str) -> ApiError:
    """A ``422 invalid_argument``."""
    return api_error("invalid_argument", message)


def describe_id(agent_id: AgentId) -> str:
    return repr(agent_id)


def refuse_unknown_fields(payload: Mapping[str, Any], known: frozenset[str]) -> None:
    """A field the route does not read is most likely a typo: refuse it by name."""
    unknown = [key for key in payload if key not in known]
    if unknown:
        raise invalid(f"unknown field(s) {unknown}; this request reads {sorted(known)}")


def parse_session(payload: Mapping[str, Any]) -> str:
    """``session``: a string naming one game on the server (default ``""``)."""
    session = payload.get("session")
    if session is None:
        return ""
    if not isinstance(session, str):
        raise invalid(f"session must be a string, got {type(session).__name__}")
    if len(session) > MAX_SESSION_LENGTH:
        raise invalid(f"session must be at most {MAX_SESSION_LENGTH} characters")
    return session


def _agent_id(value: Any, where: str) -> AgentId:
    if isinstance(value, (bool, np.bool_)):
        raise invalid(f"{where} must be a string or an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        number = int(value)
        if not _INT64[0] <= number <= _INT64[1]:
            raise invalid(f"{where} is out of the 64-bit integer range")
        return number
    if isinstance(value, str):
        if not value or len(value) > _MAX_ID_LENGTH:
            raise invalid(
                f"{where} must be a non-empty string of at most {_MAX_ID_LENGTH} characters"
            )
        return value
    raise invalid(f"{where} must be a string or an integer, got {type(value).__name__}")


def parse_agent_ids(
    payload: Mapping[str, Any], field: str = "agent_ids", *, required: bool = True
) -> list[AgentId] | None:
    """A list of distinct agent ids (strings or integers); ``None`` when absent and not
    ``required``."""
    raw = payload.get(field)
    if raw is None:
        if required:
            raise invalid(f"{field} is required: a list of agent ids (strings or integers)")
        return None
    if isinstance(raw, np.ndarray) and raw.ndim == 1 and raw.dtype.kind in "iu":
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise invalid(f"{field} must be a list of agent ids, got {type(raw).__name__}")
    # The common case, checked without a Python step per id: every id already valid
    # (all plain integers in range, or all strings of an accepted length) and distinct.
    types = set(map(type, raw))
    if not raw or (
        types == {int}
        and _INT64[0] <= min(raw)
        and max(raw) <= _INT64[1]
        or types == {str}
        and min(map(len, raw)) > 0
        and max(map(len, raw)) <= _MAX_ID_LENGTH
    ):
        ids = list(raw)
        if len(set(ids)) == len(ids):
            return ids
    ids = [_agent_id(value, f"{field}[{i}]") for i, value in enumerate(raw)]
    seen: dict[AgentId, int] = {}
    for i, agent_id in enumerate(ids):
        first = seen.setdefault(agent_id, i)
        if first != i:
            raise invalid(
                f"{field} lists agent {describe_id(agent_id)} twice (at {first} and {i});"
                " one call acts once per agent"
            )
    return ids


def parse_bool(payload: Mapping[str, Any], field: str, default: bool) -> bool:
    value = payload.get(field)
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise invalid(f"{field} must be true or false, got {value!r}")


def parse_control(value: Any, field: str = "value") -> float:
    """A control value in [0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise invalid(f"{field} must be a number in [0, 1], got {value!r}")
    number = float(value)
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise invalid(f"{field} must be in [0, 1], got {number!r}")
    return number


def parse_num_input_states(value: Any, maximum: int, field: str = "value") -> int:
    """A context length K in [1, maximum]."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise invalid(f"{field} must be an integer, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise invalid(f"{field} must be an integer in [1, {maximum}], got {value!r}")
    k = int(value)
    if not 1 <= k <= maximum:
        raise invalid(f"{field} must be in [1, {maximum}] (the trained maximum), got {k}")
    return k


# ------------------------------------------------------------------ observations


_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def _bad_float(array: np.ndarray, low: np.ndarray, high: np.ndarray) -> str | None:
    """Why a float Box value is refused: NaN anywhere, infinities past finite bounds."""
    if np.isnan(array).any():
        return "NaN is not a valid observation value"
    pos, neg = np.isposinf(array), np.isneginf(array)
    if (pos & np.isfinite(high)).any():
        return "+inf where the space's upper bound is finite"
    if (neg & np.isfinite(low)).any():
        return "-inf where the space's lower bound is finite"
    return None


def check_value(space: gymnasium.Space, value: Any) -> str | None:
    """Why ``value`` (already of the space's type and shape) cannot be fed to the
    policy, or None: non-finite numbers the space forbids, discrete values out of range."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            reason = check_value(sub, value[key])
            if reason:
                return f"[{key!r}]: {reason}"
        return None
    if isinstance(space, spaces.Tuple):
        for i, (sub, item) in enumerate(zip(space.spaces, value, strict=True)):
            reason = check_value(sub, item)
            if reason:
                return f"[{i}]: {reason}"
        return None
    if isinstance(space, spaces.Box):
        if space.dtype.kind == "f":
            return _bad_float(np.asarray(value), space.low, space.high)
        return None
    if isinstance(space, spaces.Discrete):
        v = int(value)
        if not space.start <= v < space.start + space.n:
            return f"{v} is outside Discrete({space.n}, start={int(space.start)})"
        return None
    if isinstance(space, spaces.MultiDiscrete):
        v = np.asarray(value, dtype=np.int64)
        start = np.asarray(space.start, dtype=np.int64)
        if ((v < start) | (v >= start + np.asarray(space.nvec, dtype=np.int64))).any():
            return f"{v.tolist()} is outside {space}"
        return None
    if isinstance(space, spaces.MultiBinary):
        v = np.asarray(value)
        if ((v != 0) & (v != 1)).any():
            return "MultiBinary values must be 0 or 1"
        return None
    return f"{type(space).__name__} observations are not supported"


_BATCHED: dict[tuple[int, int], tuple[gymnasium.Space, gymnasium.Space]] = {}
_BATCHED_LIMIT = 256


def _batched(space: gymnasium.Space, count: int) -> gymnasium.Space:
    """``batch_space(space, count)``, cached: building one deep-copies the space and
    seeds a new random generator, which would cost more than the rest of a call."""
    key = (id(space), count)
    entry = _BATCHED.get(key)
    if entry is None or entry[0] is not space:
        if len(_BATCHED) >= _BATCHED_LIMIT:
            _BATCHED.clear()
        entry = _BATCHED[key] = (space, batch_space(space, count))
    return entry[1]


def _stacked(space: gymnasium.Space, raw: Any, count: int) -> np.ndarray | None:
    """The observations as one ``[N, *shape]`` array when ``raw`` is stacked cleanly
    (the fast path for array spaces); None to fall back to per-agent reading, which
    names the agent whose observation is wrong."""
    if not isinstance(space, _ARRAY_SPACES) or not isinstance(raw, (np.ndarray, list)):
        return None
    try:
        return np.asarray(wire.value_from_wire(_batched(space, count), raw))
    except (wire.WireError, ValueError, TypeError):
        return None


def _check_stacked(space: gymnasium.Space, array: np.ndarray, ids: list[AgentId]) -> None:
    """Per-row checks of a stacked array, naming the first agent that fails."""
    if isinstance(space, spaces.Box) and space.dtype.kind != "f":
        return
    if isinstance(space, spaces.Box):
        if np.isfinite(array).all():
            return  # the common case: no NaN, no infinity, nothing to refuse
        flat = array.reshape(len(ids), -1)
        bad = np.isnan(flat).any(axis=1)
        bad |= (np.isposinf(flat) & np.isfinite(space.high.reshape(-1))).any(axis=1)
        bad |= (np.isneginf(flat) & np.isfinite(space.low.reshape(-1))).any(axis=1)
    elif isinstance(space, spaces.Discrete):
        bad = (array < space.start) | (array >= space.start + space.n)
    elif isinstance(space, spaces.MultiDiscrete):
        start = np.asarray(space.start, dtype=np.int64)
        top = start + np.asarray(space.nvec, dtype=np.int64)
        flat = array.reshape(len(ids), -1).astype(np.int64)
        bad = ((flat < start.reshape(-1)) | (flat >= top.reshape(-1))).any(axis=1)
    else:  # MultiBinary
        flat = array.reshape(len(ids), -1)
        bad = ((flat != 0) & (flat != 1)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        reason = check_value(space, array[i]) or "not a valid value of the space"
        raise invalid(f"observations[{i}] (agent {describe_id(ids[i])}): {reason}")


def parse_observations(
    space: gymnasium.Space, payload: Mapping[str, Any], ids: list[AgentId]
) -> Any:
    """``observations``: one per agent of ``ids``, as a batch in Gymnasium's vector layout
    (what a vector env of the space returns)."""
    raw = payload.get("observations")
    if raw is None:
        raise invalid("observations is required: one observation per agent in agent_ids")
    count = len(ids)
    stacked = _stacked(space, raw, count)
    if stacked is not None:
        _check_stacked(space, stacked, ids)
        return stacked
    if isinstance(raw, np.ndarray) and raw.ndim >= 1 or isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise invalid(
            f"observations must be a list with one observation per agent, got {type(raw).__name__}"
        )
    if len(items) != count:
        raise invalid(
            f"observations has {len(items)} entries for {count} agent_ids; send one per agent"
        )
    values = []
    for i, (agent_id, item) in enumerate(zip(ids, items, strict=True)):
        where = f"observations[{i}] (agent {describe_id(agent_id)})"
        try:
            value = wire.value_from_wire(space, item)
        except wire.WireError as exc:
            raise invalid(f"{where}: {exc}") from None
        reason = check_value(space, value)
        if reason:
            raise invalid(f"{where}: {reason}")
        values.append(value)
    return concatenate(space, values, create_empty_array(space, count))
