"""Reading a request body as a map, within the server's size limit.

A body is refused with 413 as soon as it is known to be too large: unread when its declared
``Content-Length`` is over the limit, and mid-stream when a chunked body grows past it, so a
client cannot make the server buffer more than the limit.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from agentgpt import wire
from agentgpt.service import errors

__all__ = ["read_payload"]


async def read_payload(
    request: Request, content_length: str | None, media_type: str, limit: int
) -> dict[str, Any]:
    """The body decoded from ``media_type`` as a map; an empty body is ``{}``.

    ``content_length``: the request's declared length, if any. Raises 413 over ``limit``
    bytes, 400 when the body does not decode or is not a map.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            raise errors.payload_too_large(
                f"the body is {declared} bytes; the limit is {limit} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await stream.aclose()
            raise errors.payload_too_large(f"the body exceeds the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
    data = b"".join(chunks)  # a single chunk is returned as is, not copied
    if not data:
        return {}
    try:
        payload = wire.decode(data, media_type)
    except wire.WireError as exc:
        kind = "JSON" if media_type == wire.JSON_MEDIA_TYPE else "MessagePack"
        raise errors.bad_request(f"the body is not valid {kind}: {exc}") from None
    if not isinstance(payload, dict):
        raise errors.bad_request(
            f"the body must be a map (a JSON object), got {type(payload).__name__}"
        )
    return payload
