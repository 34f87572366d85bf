"""The server's error vocabulary: every failure a client can see, with its HTTP status.

Each error travels as ``{"error": {"type": ..., "message": ...}}`` in the request's encoding
(see ``docs/protocol.md``, "Errors"). Raising an :class:`ApiError` anywhere in request
handling is the only way to produce one, so the status/type pairs below are the complete,
documented list.
"""

from __future__ import annotations

import traceback
from typing import Any

__all__ = [
    "ApiError",
    "bad_request",
    "unauthorized",
    "not_found",
    "unknown_env",
    "env_not_found",
    "method_not_allowed",
    "ambiguous_env",
    "reset_needed",
    "payload_too_large",
    "invalid_argument",
    "invalid_action",
    "unsupported_space",
    "too_many_envs",
    "env_error",
    "internal_error",
    "error_body",
]


class ApiError(Exception):
    """A failure with a documented status and type, shown to the client as is."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
        debug_traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers
        #: Shown to the client only when the server runs with ``debug=True``.
        self.debug_traceback = debug_traceback


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def unknown_env(message: str) -> ApiError:
    return ApiError(404, "unknown_env", message)


def env_not_found(message: str) -> ApiError:
    return ApiError(404, "env_not_found", message)


def method_not_allowed(message: str, allowed: str | None = None) -> ApiError:
    headers = {"Allow": allowed} if allowed else None
    return ApiError(405, "method_not_allowed", message, headers=headers)


def ambiguous_env(message: str) -> ApiError:
    return ApiError(409, "ambiguous_env", message)


def reset_needed(message: str) -> ApiError:
    return ApiError(409, "reset_needed", message)


def payload_too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def invalid_argument(message: str) -> ApiError:
    return ApiError(422, "invalid_argument", message)


def invalid_action(message: str) -> ApiError:
    return ApiError(422, "invalid_action", message)


def unsupported_space(message: str) -> ApiError:
    return ApiError(422, "unsupported_space", message)


def too_many_envs(message: str) -> ApiError:
    return ApiError(429, "too_many_envs", message)


def env_error(exc: BaseException) -> ApiError:
    """An exception raised by env code: its type and message, never its traceback.

    The traceback is kept on the error so the server can log it and, in debug mode, send it.
    """
    message = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ApiError(500, "env_error", message, debug_traceback=tb)


def internal_error(exc: BaseException) -> ApiError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ApiError(
        500, "internal_error", f"internal server error ({type(exc).__name__})", debug_traceback=tb
    )


def error_body(error: ApiError, debug: bool = False) -> dict[str, Any]:
    """The wire form of ``error``; the traceback is included only in debug mode."""
    body: dict[str, Any] = {"type": error.error_type, "message": error.message}
    if debug and error.debug_traceback:
        body["traceback"] = error.debug_traceback
    return {"error": body}
