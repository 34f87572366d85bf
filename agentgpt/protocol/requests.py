"""Request bodies: the builders clients call and the parsers the env server calls.

A builder returns the map a client posts; a parser reads a decoded body on the server,
fills in the documented defaults and checks each field's type, raising
:class:`~agentgpt.protocol.errors.ProtocolViolation` (``invalid_argument``) with a message
that names the field. Parsers check the shape of a request only: whether a name is served,
an action fits its space or a key exists is the server's to decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentgpt.protocol.autoreset import AUTORESET_MODES
from agentgpt.protocol.errors import ProtocolViolation
from agentgpt.protocol.fields import (
    ACTION,
    AUTORESET_MODE,
    ENV_ID,
    ENV_KEY,
    ENV_NAME,
    KWARGS,
    NUM_ENVS,
    OPTIONS,
    RENDER_MODE,
    RESET_MASK,
    SEED,
    VECTORIZATION_MODE,
)

__all__ = [
    "MAKE_AUTORESET_MODE",
    "MAKE_VEC_AUTORESET_MODE",
    "KWARG_KEY_PATTERN",
    "MAX_ENV_NAME_LENGTH",
    "MAX_RENDER_MODE_LENGTH",
    "RENDER_MODE_PATTERN",
    "RESERVED_KWARGS",
    "SEED_LIMIT",
    "VECTORIZATION_MODES",
    "MakeRequest",
    "MakeVecRequest",
    "ResetRequest",
    "close_request",
    "make_request",
    "make_vec_request",
    "parse_env_key",
    "parse_make",
    "parse_make_vec",
    "parse_reset",
    "parse_step_action",
    "render_request",
    "reset_mask_to_wire",
    "reset_request",
    "short_repr",
    "step_request",
]

#: The autoreset mode of an env made without one, by route.
MAKE_AUTORESET_MODE = "disabled"
MAKE_VEC_AUTORESET_MODE = "next_step"
#: ``vectorization_mode`` values of ``/make_vec``; the first is the default.
VECTORIZATION_MODES = ("sync", "async")
#: Seeds are integers in ``[0, SEED_LIMIT)``: what MessagePack's unsigned integers carry.
SEED_LIMIT = 2**64
#: The longest ``env_name`` (or ``env_id``) a request may send.
MAX_ENV_NAME_LENGTH = 256
#: ``render_mode`` is a name such as ``rgb_array``: letters, digits, ``_`` and ``-``.
RENDER_MODE_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_RENDER_MODE_LENGTH = 64
#: ``kwargs`` keys are Python identifiers in ASCII.
KWARG_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: ``kwargs`` keys that are arguments of ``gymnasium.make`` / ``gymnasium.make_vec``
#: themselves, which the request's own fields set (``render_mode`` is read apart: it is
#: the same as the ``render_mode`` field).
RESERVED_KWARGS = (
    "id",
    NUM_ENVS,
    VECTORIZATION_MODE,
    "vector_kwargs",
    "wrappers",
)
_RENDER_MODE_RE = re.compile(RENDER_MODE_PATTERN)
_KWARG_KEY_RE = re.compile(KWARG_KEY_PATTERN)

_REPR_LIMIT = 200


def short_repr(obj: Any) -> str:
    """``repr(obj)`` cut to a length an error message can carry."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    text = repr(obj)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _invalid(message: str) -> ProtocolViolation:
    return ProtocolViolation("invalid_argument", message)


# ---------------------------------------------------------------- field checks


def _int_field(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{name} must be an integer, got {short_repr(value)}")
    return value


def _check_seed(seed: int, what: str = SEED) -> int:
    if seed < 0:
        raise _invalid(f"{what} must be non-negative, got {short_repr(seed)}")
    if seed >= SEED_LIMIT:
        raise _invalid(f"{what} must be below 2**64, got {short_repr(seed)}")
    return seed


def _seed_field(payload: dict[str, Any]) -> int | None:
    seed = _int_field(payload, SEED)
    return None if seed is None else _check_seed(seed)


def _str_field(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name} must be a non-empty string, got {short_repr(value)}")
    return value


def _map_field(payload: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _invalid(f"{name} must be a map with string keys, got {short_repr(value)}")
    return value


def _choice_field(payload: dict[str, Any], name: str, choices: Any, default: str) -> str:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise _invalid(f"{name} must be one of {options} or null, got {short_repr(value)}")
    return value


def parse_env_key(payload: dict[str, Any]) -> str | None:
    """The request's ``env_key``; ``None`` when left out (the caller's only env)."""
    return _str_field(payload, ENV_KEY)


# ---------------------------------------------------------------- /make and /make_vec


@dataclass(frozen=True)
class MakeRequest:
    """A parsed ``/make`` body, defaults filled in."""

    env_name: str
    seed: int | None
    kwargs: dict[str, Any]
    render_mode: str | None
    autoreset_mode: str


@dataclass(frozen=True)
class MakeVecRequest(MakeRequest):
    """A parsed ``/make_vec`` body: ``/make``'s fields and the vector's own."""

    num_envs: int
    vectorization_mode: str


def make_request(
    env_name: str,
    *,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
    autoreset_mode: str | None = None,
) -> dict[str, Any]:
    """The body of ``/make``; ``autoreset_mode=None`` takes the server's default."""
    return {
        ENV_NAME: env_name,
        SEED: seed,
        KWARGS: env_kwargs or {},
        RENDER_MODE: render_mode,
        AUTORESET_MODE: autoreset_mode,
    }


def make_vec_request(
    env_name: str,
    num_envs: int,
    *,
    vectorization_mode: str = VECTORIZATION_MODES[0],
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
    autoreset_mode: str | None = None,
) -> dict[str, Any]:
    """The body of ``/make_vec``: that of ``/make`` plus the vector's fields."""
    body = make_request(
        env_name,
        seed=seed,
        env_kwargs=env_kwargs,
        render_mode=render_mode,
        autoreset_mode=autoreset_mode,
    )
    body[NUM_ENVS] = num_envs
    body[VECTORIZATION_MODE] = vectorization_mode
    return body


def _env_name(payload: dict[str, Any]) -> str:
    name = _str_field(payload, ENV_NAME)
    alias = _str_field(payload, ENV_ID)
    if name is not None and alias is not None and name != alias:
        raise _invalid(f"{ENV_NAME} and {ENV_ID} (its alias) disagree; send one")
    name = name or alias
    if name is None:
        raise _invalid(f"{ENV_NAME} is required (a Gymnasium id such as CartPole-v1)")
    if len(name) > MAX_ENV_NAME_LENGTH:
        raise _invalid(f"{ENV_NAME} must be at most {MAX_ENV_NAME_LENGTH} characters long")
    return name


def _check_render_mode(mode: Any, what: str) -> str | None:
    if mode is None:
        return None
    if (
        not isinstance(mode, str)
        or len(mode) > MAX_RENDER_MODE_LENGTH
        or not _RENDER_MODE_RE.match(mode)
    ):
        raise _invalid(
            f"{what} must be a render mode name such as 'rgb_array' (letters, digits, '_'"
            f" and '-', at most {MAX_RENDER_MODE_LENGTH}) or null, got {short_repr(mode)}"
        )
    if mode == "human":
        raise _invalid(
            f"{what} 'human' is not available: the server has no screen (use 'rgb_array')"
        )
    return mode


def _kwargs_and_render_mode(payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``kwargs`` without its ``render_mode``, and the render mode the request asks for:
    the field's, or the one in ``kwargs`` (which is checked the same way)."""
    mode = _check_render_mode(payload.get(RENDER_MODE), RENDER_MODE)
    kwargs = _map_field(payload, KWARGS) or {}
    for key in kwargs:
        if not _KWARG_KEY_RE.match(key):
            raise _invalid(
                f"each key of {KWARGS} must be a Python identifier in ASCII, got {short_repr(key)}"
            )
        if key in RESERVED_KWARGS:
            raise _invalid(
                f"{KWARGS} cannot carry {key!r}: it is an argument of gymnasium.make or"
                " make_vec, which the request's own fields set"
            )
    if RENDER_MODE in kwargs:
        kwargs = dict(kwargs)
        in_kwargs = _check_render_mode(kwargs.pop(RENDER_MODE), f"{KWARGS}.{RENDER_MODE}")
        if mode is not None and in_kwargs is not None and in_kwargs != mode:
            raise _invalid(
                f"{RENDER_MODE} {mode!r} and {KWARGS}.{RENDER_MODE} {in_kwargs!r} disagree;"
                " send one"
            )
        mode = mode or in_kwargs
    return kwargs, mode


def parse_make(payload: dict[str, Any]) -> MakeRequest:
    """The ``/make`` request in ``payload``."""
    env_name = _env_name(payload)
    seed = _seed_field(payload)
    kwargs, render_mode = _kwargs_and_render_mode(payload)
    return MakeRequest(
        env_name=env_name,
        seed=seed,
        kwargs=kwargs,
        render_mode=render_mode,
        autoreset_mode=_choice_field(payload, AUTORESET_MODE, AUTORESET_MODES, MAKE_AUTORESET_MODE),
    )


def parse_make_vec(payload: dict[str, Any]) -> MakeVecRequest:
    """The ``/make_vec`` request in ``payload``."""
    env_name = _env_name(payload)
    num_envs = _int_field(payload, NUM_ENVS)
    if num_envs is None or num_envs < 1:
        raise _invalid(f"num_envs must be an integer >= 1, got {short_repr(num_envs)}")
    mode = _choice_field(payload, VECTORIZATION_MODE, VECTORIZATION_MODES, VECTORIZATION_MODES[0])
    seed = _seed_field(payload)
    kwargs, render_mode = _kwargs_and_render_mode(payload)
    return MakeVecRequest(
        env_name=env_name,
        seed=seed,
        kwargs=kwargs,
        render_mode=render_mode,
        autoreset_mode=_choice_field(
            payload, AUTORESET_MODE, AUTORESET_MODES, MAKE_VEC_AUTORESET_MODE
        ),
        num_envs=num_envs,
        vectorization_mode=mode,
    )


# ---------------------------------------------------------------- /reset


@dataclass(frozen=True)
class ResetRequest:
    """A parsed ``/reset`` body (its ``env_key`` is read first, by :func:`parse_env_key`).

    For a vector env ``seed`` may be a per-sub-env list, and ``reset_mask`` is the boolean
    array of ``options["reset_mask"]`` (also put back into ``options`` as that array, the
    form Gymnasium takes); for other envs ``options`` is passed on as sent.
    """

    seed: int | list[int | None] | None
    options: dict[str, Any] | None
    reset_mask: np.ndarray | None = None


def reset_request(
    env_key: str, seed: Any = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body of ``/reset``; ``seed`` as the env kind takes it (see the docs)."""
    body: dict[str, Any] = {ENV_KEY: env_key, SEED: seed}
    if options:
        body[OPTIONS] = options
    return body


def reset_mask_to_wire(mask: Any) -> list[bool]:
    """A vector env's reset mask (any array-like of booleans) as the wire's list."""
    return [bool(m) for m in np.asarray(mask)]


def _vector_seed(seed: Any, num_envs: int) -> int | list[int | None] | None:
    if seed is None:
        return None
    if isinstance(seed, int) and not isinstance(seed, bool):
        return _check_seed(seed)
    if isinstance(seed, list):
        if len(seed) != num_envs:
            raise _invalid(
                f"seed must be an integer or a list of {num_envs} seeds, got {len(seed)} items"
            )
        for item in seed:
            if item is None:
                continue
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise _invalid(
                    f"each seed must be a non-negative integer or null, got {short_repr(item)}"
                )
            _check_seed(item, "each seed")
        return seed
    raise _invalid(f"seed must be an integer, a list of integers or null, got {short_repr(seed)}")


def _reset_mask(raw: Any, num_envs: int) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if (
        not isinstance(raw, list)
        or len(raw) != num_envs
        or not all(isinstance(x, bool) for x in raw)
        or not any(raw)  # Gymnasium refuses a mask that resets nothing
    ):
        raise _invalid(
            f"options.{RESET_MASK} must be a list of {num_envs} booleans with at least"
            f" one true, got {short_repr(raw)}"
        )
    return np.array(raw, dtype=bool)


def parse_reset(payload: dict[str, Any], num_envs: int | None = None) -> ResetRequest:
    """The ``/reset`` request in ``payload``; ``num_envs`` for a vector env, else ``None``."""
    if num_envs is None:
        return ResetRequest(_seed_field(payload), _map_field(payload, OPTIONS))
    seed = _vector_seed(payload.get(SEED), num_envs)
    options = _map_field(payload, OPTIONS)
    if not options or RESET_MASK not in options:
        return ResetRequest(seed, options)
    mask = _reset_mask(options[RESET_MASK], num_envs)
    return ResetRequest(seed, {**options, RESET_MASK: mask}, mask)


# ---------------------------------------------------------------- /step, /render and /close


def step_request(env_key: str, action: Any) -> dict[str, Any]:
    """The body of ``/step``: ``action`` already in its wire form."""
    return {ENV_KEY: env_key, ACTION: action}


def parse_step_action(payload: dict[str, Any]) -> Any:
    """The wire action of a ``/step`` body (checked against the space by the env)."""
    if ACTION not in payload:
        raise _invalid(f"{ACTION} is required")
    return payload[ACTION]


def render_request(env_key: str) -> dict[str, Any]:
    """The body of ``/render`` (its only field, ``env_key``, is read by
    :func:`parse_env_key`)."""
    return {ENV_KEY: env_key}


def close_request(env_key: str) -> dict[str, Any]:
    """The body of ``/close``."""
    return {ENV_KEY: env_key}
