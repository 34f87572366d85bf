"""What a failed request means for a fleet: whose fault it is decides what gets cut.

A trainer must keep going when one simulator misbehaves, yet must not paper over its own
mistakes. So every error a remote env returns is sorted into one of three kinds: the
*host* is gone or broken (all of its envs are cut, and it is probed until it returns), the
*env*'s own code raised (only that env is cut and made again), or the request itself was
wrong (a bad key, an invalid action), which no retry fixes and which is raised to the
caller. The kind follows from the error's class, through what retrying it can achieve
(:attr:`~agentgpt.remote.errors.RemoteEnvError.retry`).
"""

from __future__ import annotations

import enum

from agentgpt.core.errors import EnvsUnavailable as FleetDownError
from agentgpt.protocol.errors import Retry
from agentgpt.remote.errors import RemoteEnvError, RemoteTimeout

__all__ = ["Fault", "FleetDownError", "classify", "describe"]


class Fault(enum.Enum):
    #: Unreachable, too slow, restarted or broken: every env of the host is cut.
    HOST = "host"
    #: The env's own code raised (``env_error``): only that env is cut and made again.
    ENV = "env"
    #: The env is unknown to the server (``env_not_found``): the server's incarnation
    #: tells whether it restarted (a host fault) or only dropped this env (an env fault).
    MISSING = "missing"
    #: A mistake of the caller or its configuration: raised, never retried.
    FATAL = "fatal"


#: Whose fault an error is, by what retrying it can achieve.
_FAULTS = {
    Retry.LATER: Fault.HOST,
    Retry.REMAKE: Fault.ENV,
    Retry.CHECK_SERVER: Fault.MISSING,
    Retry.NEVER: Fault.FATAL,
}


def classify(error: BaseException) -> Fault:
    """The kind of fault ``error`` (raised by a request to an env server) is."""
    if not isinstance(error, RemoteEnvError):
        return Fault.FATAL
    return _FAULTS[error.retry]


def describe(error: BaseException) -> str:
    """A short reason for logs: what went wrong, without the request details."""
    if isinstance(error, RemoteTimeout):
        return "no answer in time"
    if isinstance(error, RemoteEnvError):
        if error.status is None:
            return error.message
        return f"HTTP {error.status} {error.error_type}: {error.message}"
    return f"{type(error).__name__}: {error}"
