"""The error vocabulary: every error type an env host answers with, its HTTP status, and
what a client should do about it.

Each error travels as ``{"error": {"type": ..., "message": ...}}`` in the request's
encoding (``docs/protocol.md``, "Errors", is the prose twin of :data:`ERRORS`). The server
raises errors only by these types; clients map them to exceptions and decide whether to
retry from :attr:`ErrorKind.retry`, never by reading messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ERRORS",
    "MESSAGE_LIMIT",
    "ErrorKind",
    "ProtocolViolation",
    "Retry",
    "kind_of",
    "one_line",
]


class Retry(enum.Enum):
    """What retrying a failed request can achieve."""

    #: The request itself is wrong (bad key, bad field, invalid action): no retry helps.
    NEVER = "never"
    #: The server is unwell or busy: back off and retry the host later.
    LATER = "later"
    #: The env's own code failed: the env is lost, but making it again may work.
    REMAKE = "remake"
    #: The env is unknown to the server: it may have restarted (compare its incarnation)
    #: or closed only this env.
    CHECK_SERVER = "check_server"


@dataclass(frozen=True)
class ErrorKind:
    """One documented error: its wire ``type``, HTTP ``status`` and retry class."""

    type: str
    status: int
    retry: Retry
    #: When the server answers with it (the table in docs/protocol.md).
    meaning: str


def _kinds(*kinds: ErrorKind) -> dict[str, ErrorKind]:
    return {kind.type: kind for kind in kinds}


#: Every error type, by wire name.
ERRORS: dict[str, ErrorKind] = _kinds(
    ErrorKind("bad_request", 400, Retry.NEVER, "the body cannot be decoded, or is not a map"),
    ErrorKind("unauthorized", 401, Retry.NEVER, "missing or wrong API key"),
    ErrorKind("session_forbidden", 403, Retry.NEVER, "the session belongs to another API key"),
    ErrorKind("host_not_allowed", 403, Retry.NEVER, "the Host header names no allowed host"),
    ErrorKind("origin_not_allowed", 403, Retry.NEVER, "a web page's origin that is not allowed"),
    ErrorKind("not_found", 404, Retry.NEVER, "unknown route"),
    ErrorKind("unknown_env", 404, Retry.NEVER, "the env name is not served here"),
    ErrorKind(
        "env_not_found",
        404,
        Retry.CHECK_SERVER,
        "unknown, closed, idle-expired or another key's env_key",
    ),
    ErrorKind("method_not_allowed", 405, Retry.NEVER, "wrong HTTP method for a route"),
    ErrorKind("ambiguous_env", 409, Retry.NEVER, "env_key left out while the caller owns several"),
    ErrorKind("reset_needed", 409, Retry.NEVER, "step before reset, or after the end"),
    ErrorKind("payload_too_large", 413, Retry.NEVER, "the body exceeds the size limit"),
    ErrorKind("unsupported_media_type", 415, Retry.NEVER, "a body that is not JSON or MessagePack"),
    ErrorKind("invalid_argument", 422, Retry.NEVER, "a field has the wrong type or value"),
    ErrorKind("invalid_action", 422, Retry.NEVER, "the action is not in the action space"),
    ErrorKind("unsupported_space", 422, Retry.NEVER, "a space the protocol cannot carry"),
    ErrorKind("too_many_envs", 429, Retry.LATER, "the key would own more envs than allowed"),
    ErrorKind(
        "too_many_agents", 429, Retry.LATER, "a session or the server would hold too many agents"
    ),
    ErrorKind(
        "too_many_processes",
        429,
        Retry.LATER,
        "an async vector env would take the server past its process limit",
    ),
    ErrorKind("headers_too_large", 431, Retry.NEVER, "the request head exceeds the size limit"),
    ErrorKind("env_error", 500, Retry.REMAKE, "the env raised, or returned an unencodable value"),
    ErrorKind("internal_error", 500, Retry.LATER, "a bug in the server"),
    ErrorKind("too_many_connections", 503, Retry.LATER, "the server's connection limit is reached"),
)


def kind_of(error_type: str | None, status: int | None = None) -> ErrorKind | None:
    """The documented kind of an error answer, or None for one outside the vocabulary
    (a proxy's answer, an older or newer server). A known type whose status disagrees
    with the table is not trusted either."""
    kind = ERRORS.get(error_type or "")
    if kind is None or (status is not None and status != kind.status):
        return None
    return kind


#: The longest text :func:`one_line` keeps.
MESSAGE_LIMIT = 1000


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one line of printable characters, safe for a log or a terminal.

    Every character ``str.isprintable`` refuses (line breaks, tabs, ANSI escapes and other
    control characters, Unicode line separators and bidirectional overrides) is written
    as Python writes it in a string literal (``\\n``, ``\\x1b``, ``\\u2028``); text
    beyond ``limit`` characters is cut and ends with ``...``. Error messages quote what a
    client sent through it, so a client cannot forge log lines or send escape sequences
    to an operator's terminal.
    """
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


class ProtocolViolation(ValueError):
    """A message that breaks the protocol, found while parsing it.

    Raised by the parsers in :mod:`agentgpt.protocol.requests` with the documented
    ``error_type`` (``invalid_argument`` for a field of the wrong type or value); the env
    server answers it with that type's status and ``message`` unchanged.
    """

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERRORS:
            raise ValueError(f"{error_type!r} is not a documented error type")
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    @property
    def kind(self) -> ErrorKind:
        """The documented kind: HTTP status and retry class."""
        return ERRORS[self.error_type]
