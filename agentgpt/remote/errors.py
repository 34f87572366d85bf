"""The exceptions the remote clients raise, one class per thing a caller does about it.

Every failed request raises a :class:`RemoteEnvError`, so ``except RemoteEnvError``
catches them all. Its subclasses say what went wrong in the terms a caller acts on::

    RemoteEnvError                 any failed request
    ├── AuthError                  401: missing or wrong API key (403 from a proxy too)
    ├── NotFoundError              404: unknown route or env name
    │   └── EnvNotFoundError       404 env_not_found: the env_key is unknown, closed or
    │                              idle-expired, or the server restarted
    ├── BadRequestError            400/405/409/413/422: the request itself is wrong (an
    │                              invalid action, a step before reset, a bad field)
    ├── EnvError                   500 env_error: the env's own code raised; make it again
    ├── UnavailableError           the server is down, busy or broken: retry later
    │   │                          (429 too_many_envs, 500 internal_error, 408 and 5xx
    │   │                          from proxies)
    │   └── NoAnswerError          no answer at all: refused, reset, hung up mid-answer
    │       └── RemoteTimeout      no answer within the timeout
    ├── ProtocolError              an answer that is not the protocol: not HTTP, an
    │                              undecodable body, a wrong shape, a status that means
    │                              nothing here (a peer that is not an env server)
    └── ClientClosedError          the client was closed before the request

Each keeps the fields a caller reads without parsing text:

- ``status``: the HTTP status (``404``, ``422``, ...), or ``None`` when no answer (or no
  valid one) came back;
- ``error_type``: the server's machine-readable ``error.type`` (``"invalid_action"``,
  ``"env_not_found"``, ...), or the client's own ``"connection_error"``, ``"timeout"``,
  ``"closed"`` or ``"bad_response"``;
- ``message``: the server's human-readable message, shown as is;
- ``retry``: the class's :class:`~agentgpt.protocol.errors.Retry`, what retrying can
  achieve (never, later, after making the env again, after checking the server).

An answer is classed by its documented type (``agentgpt.protocol.errors``, the
vocabulary ``docs/protocol.md`` lists); one outside the vocabulary (a proxy's HTML page,
another server) by its HTTP status alone. :func:`remote_error` is the one place that
decides the class; transports raise what it returns.
"""

from __future__ import annotations

from typing import ClassVar

from agentgpt.protocol.errors import Retry, kind_of

__all__ = [
    "AuthError",
    "BadRequestError",
    "ClientClosedError",
    "EnvError",
    "EnvNotFoundError",
    "NoAnswerError",
    "NotFoundError",
    "ProtocolError",
    "RemoteEnvError",
    "RemoteTimeout",
    "UnavailableError",
    "remote_error",
]


class RemoteEnvError(RuntimeError):
    """A request to an env server failed; the base of every error the clients raise."""

    #: What retrying the request can achieve.
    retry: ClassVar[Retry] = Retry.NEVER

    def __init__(self, status: int | None, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.message = message
        prefix = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{prefix} ({error_type}): {message}")

    def __reduce__(self):  # keep the class and the three fields when pickled
        return (type(self), (self.status, self.error_type, self.message))


class AuthError(RemoteEnvError):
    """The server (or a proxy before it) refused the API key, or its absence."""


class NotFoundError(RemoteEnvError):
    """The route or the env name does not exist on this server."""


class EnvNotFoundError(NotFoundError):
    """The server does not know this ``env_key``: closed, idle-expired, another key's,
    or the server restarted (its ``/health`` incarnation tells which)."""

    retry = Retry.CHECK_SERVER


class BadRequestError(RemoteEnvError):
    """The request itself is wrong (a field, an action, the order of calls): no retry
    helps, and the env stays usable."""


class EnvError(RemoteEnvError):
    """The env's own code raised (the message names the exception); the server env is
    lost, but making it again may work."""

    retry = Retry.REMAKE


class UnavailableError(RemoteEnvError):
    """The server is down, busy or broken: retrying later may work."""

    retry = Retry.LATER


class NoAnswerError(UnavailableError):
    """No answer came back: the connection was refused, reset, or closed mid-answer."""


class RemoteTimeout(NoAnswerError):
    """No answer came back within the client's timeout."""


class ProtocolError(RemoteEnvError):
    """The peer answered, but not in the protocol: likely not an env server at all."""


class ClientClosedError(RemoteEnvError):
    """The client (its transport) was closed; it sends nothing any more."""


#: Classes of the documented kinds that a retry can help, by retry class.
_BY_RETRY: dict[Retry, type[RemoteEnvError]] = {
    Retry.LATER: UnavailableError,
    Retry.REMAKE: EnvError,
    Retry.CHECK_SERVER: EnvNotFoundError,
}

#: Classes by HTTP status: for the documented kinds no retry helps, and for answers
#: outside the vocabulary (a proxy's, another server's). 5xx are handled apart.
_BY_STATUS: dict[int, type[RemoteEnvError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    405: BadRequestError,
    408: UnavailableError,
    409: BadRequestError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: UnavailableError,
    431: BadRequestError,
}

#: Classes of the failures without a (valid) answer, by the client's own error type.
_WITHOUT_ANSWER: dict[str, type[RemoteEnvError]] = {
    "connection_error": NoAnswerError,
    "timeout": RemoteTimeout,
    "closed": ClientClosedError,
    "bad_response": ProtocolError,
}


def remote_error(status: int | None, error_type: str, message: str) -> RemoteEnvError:
    """The exception for a failed request, of the class its answer calls for.

    ``status`` and ``error_type`` are the answer's (a success status with
    ``"bad_response"`` for a success whose body is not the protocol's). Without an
    answer, ``status`` is ``None`` and ``error_type`` one of the client's own:
    ``"connection_error"`` (refused, reset, hung up), ``"timeout"``, ``"closed"`` or
    ``"bad_response"`` (bytes that are not HTTP).
    """
    if status is None:
        cls = _WITHOUT_ANSWER.get(error_type, NoAnswerError)
    else:
        cls = _class_of_answer(status, error_type)
    return cls(status, error_type, message)


def _class_of_answer(status: int, error_type: str) -> type[RemoteEnvError]:
    kind = kind_of(error_type, status)
    if kind is not None and kind.retry in _BY_RETRY:
        return _BY_RETRY[kind.retry]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status < 600:
        return UnavailableError
    return ProtocolError  # a success that is no answer, or a status the protocol never uses
