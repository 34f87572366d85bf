"""The errors the env server's routes raise, beyond those of the HTTP layer.

Each is an :class:`~agentgpt.service.errors.ApiError` of a documented type whose status
comes from the protocol's vocabulary (``docs/protocol.md``, "Errors"). Env code failing is
reported as ``env_error`` with the exception's type and message, never its traceback, which
the server keeps for its log and for debug mode. :class:`ApiError` itself is here too, so
env-server code raises and catches its errors through this one module.
"""

from __future__ import annotations

from agentgpt.protocol.errors import one_line
from agentgpt.service.errors import ApiError, api_error, traceback_of

__all__ = [
    "ApiError",
    "ambiguous_env",
    "env_error",
    "env_not_found",
    "invalid_action",
    "invalid_argument",
    "reset_needed",
    "too_many_envs",
    "too_many_processes",
    "unencodable_answer",
    "unknown_env",
    "unsupported_space",
]


def unknown_env(message: str) -> ApiError:
    """The env name is not served here."""
    return api_error("unknown_env", message)


def env_not_found(message: str) -> ApiError:
    """An unknown, closed, idle-expired or another key's ``env_key``."""
    return api_error("env_not_found", message)


def ambiguous_env(message: str) -> ApiError:
    """``env_key`` left out while the caller owns several envs."""
    return api_error("ambiguous_env", message)


def reset_needed(message: str) -> ApiError:
    """A step before the first reset, or after the episode ended."""
    return api_error("reset_needed", message)


def invalid_argument(message: str) -> ApiError:
    """A field has the wrong type or value."""
    return api_error("invalid_argument", message)


def invalid_action(message: str) -> ApiError:
    """The action is not in the action space."""
    return api_error("invalid_action", message)


def unsupported_space(message: str) -> ApiError:
    """The env has a space the protocol cannot carry."""
    return api_error("unsupported_space", message)


def too_many_envs(message: str) -> ApiError:
    """The key would own more sub-envs than the server allows."""
    return api_error("too_many_envs", message)


def too_many_processes(message: str) -> ApiError:
    """An async vector env would take the server past its process limit."""
    return api_error("too_many_processes", message)


def env_error(exc: BaseException) -> ApiError:
    """An exception raised by env code: its type and message as one line of printable
    text (:func:`~agentgpt.protocol.errors.one_line`: the message may quote what a client
    sent), never its traceback.

    The traceback is kept on the error so the server can log it at debug level and, in
    debug mode, send it.
    """
    return api_error(
        "env_error", one_line(f"{type(exc).__name__}: {exc}"), debug_traceback=traceback_of(exc)
    )


def unencodable_answer(exc: Exception) -> ApiError:
    """A route's answer holds something the encoding cannot carry (an env's odd output)."""
    return api_error(
        "env_error", one_line(f"the env's output cannot be encoded: {type(exc).__name__}: {exc}")
    )
