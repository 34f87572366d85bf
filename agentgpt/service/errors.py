"""Errors a service shows its clients: :class:`ApiError` and its wire form.

Raising an :class:`ApiError` anywhere in request handling is the only way to answer with
an error; the app renders it as ``{"error": {"type": ..., "message": ...}}`` in the
request's encoding (``docs/protocol.md``, "Errors"). Every error type and its HTTP status
come from the protocol's vocabulary (:data:`agentgpt.protocol.errors.ERRORS`), so a server
cannot answer with a type or a status that clients do not know. The constructors below are
the errors the kit itself raises; a server builds its own with :func:`api_error`.
"""

from __future__ import annotations

import traceback
from typing import Any

from agentgpt.protocol.errors import ERRORS
from agentgpt.protocol.keys import BEARER_SCHEME

__all__ = [
    "ApiError",
    "api_error",
    "bad_request",
    "error_body",
    "internal_error",
    "method_not_allowed",
    "not_found",
    "payload_too_large",
    "traceback_of",
    "unauthorized",
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


def api_error(
    error_type: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    debug_traceback: str | None = None,
) -> ApiError:
    """An error of a documented type, with the status the vocabulary gives it.

    ``KeyError`` for a type outside :data:`~agentgpt.protocol.errors.ERRORS`: add it there
    (and to ``docs/protocol.md``) first.
    """
    return ApiError(ERRORS[error_type].status, error_type, message, headers, debug_traceback)


def traceback_of(exc: BaseException) -> str:
    """``exc``'s formatted traceback, for the log and for debug-mode error bodies."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def bad_request(message: str) -> ApiError:
    """The body cannot be decoded, or is not a map."""
    return api_error("bad_request", message)


def unauthorized(message: str) -> ApiError:
    """A missing or wrong key; the ``WWW-Authenticate`` header names the scheme to use."""
    return api_error("unauthorized", message, headers={"WWW-Authenticate": BEARER_SCHEME})


def not_found(message: str) -> ApiError:
    """No route has this path."""
    return api_error("not_found", message)


def method_not_allowed(message: str, allowed: str | None = None) -> ApiError:
    """The path exists but not with this method; ``allowed`` fills the ``Allow`` header."""
    return api_error("method_not_allowed", message, headers={"Allow": allowed} if allowed else None)


def payload_too_large(message: str) -> ApiError:
    """The body exceeds the server's limit."""
    return api_error("payload_too_large", message)


def internal_error(exc: BaseException) -> ApiError:
    """A bug in the server: the client learns only the exception's type."""
    return api_error(
        "internal_error",
        f"internal server error ({type(exc).__name__})",
        debug_traceback=traceback_of(exc),
    )


def error_body(error: ApiError, debug: bool = False) -> dict[str, Any]:
    """The wire form of ``error``; the traceback is included only in debug mode."""
    body: dict[str, Any] = {"type": error.error_type, "message": error.message}
    if debug and error.debug_traceback:
        body["traceback"] = error.debug_traceback
    return {"error": body}
