"""The frames of the streaming session (``docs/protocol.md``, "Streaming session").

A request frame carries a route's request as ``{"id", "path", "body"}`` (plus
``"method": "GET"`` for a GET route); its answer carries the same ``id``. Every side that
sends requests as frames (a client on ``/stream``, a trainer driving hosts that dialled
in) builds them here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["request_frame"]


def request_frame(
    request_id: int | str, path: str, body: dict[str, Any], method: str = "POST"
) -> dict[str, Any]:
    """The request frame asking route ``path`` with ``body`` (the query map for GET)."""
    frame: dict[str, Any] = {"id": request_id, "path": path, "body": body}
    if method != "POST":
        frame["method"] = method
    return frame
