"""The one exception type the remote clients raise for anything the server or network refuses."""

from __future__ import annotations

__all__ = ["RemoteEnvError"]


class RemoteEnvError(RuntimeError):
    """A request to an env server failed.

    Carries what a caller needs to decide what to do next without parsing text:

    - ``status``: the HTTP status (``404``, ``422``, ...), or ``None`` when no answer came
      back at all (connection refused, reset or timed out);
    - ``error_type``: the server's machine-readable ``error.type`` (``"invalid_action"``,
      ``"env_not_found"``, ...), or ``"connection_error"`` / ``"timeout"`` without an answer;
    - ``message``: the server's human-readable message, shown as is.
    """

    def __init__(self, status: int | None, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.message = message
        prefix = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{prefix} ({error_type}): {message}")

    def __reduce__(self):  # keep the three fields when pickled (e.g. across processes)
        return (type(self), (self.status, self.error_type, self.message))
