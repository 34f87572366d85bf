"""Which request headers a service reads, and the encodings it talks in.

A request's body is decoded as its ``Content-Type`` says (JSON when absent); the answer is
encoded as ``Accept`` asks, else like the body. The hot routes pay this on every call, so
the four headers are found in one pass over the raw list and negotiation is cached per
header pair (clients repeat the same headers).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from starlette.requests import Request

from agentgpt import wire
from agentgpt.protocol.keys import AUTHORIZATION_HEADER

__all__ = ["Encodings", "RequestHeaders", "answer_type", "negotiate", "read_headers"]

_JSON = wire.JSON_MEDIA_TYPE
# ASGI servers send header names lower-cased.
_WANTED = {
    b"content-type": 0,
    b"accept": 1,
    AUTHORIZATION_HEADER.lower().encode("latin-1"): 2,
    b"content-length": 3,
}


class RequestHeaders(NamedTuple):
    """The only request headers a service looks at."""

    content_type: str | None
    accept: str | None
    authorization: str | None
    content_length: str | None


def read_headers(request: Request) -> RequestHeaders:
    """The four headers of ``request`` (``None`` for those it lacks)."""
    values: list[str | None] = [None, None, None, None]
    for name, value in request.headers.raw:
        index = _WANTED.get(name)
        if index is not None:
            values[index] = value.decode("latin-1")
    return RequestHeaders(*values)


class Encodings(NamedTuple):
    """Media types of one exchange."""

    request: str  # how to decode the body
    response: str  # how to encode the answer


@functools.lru_cache(maxsize=256)
def negotiate(content_type: str | None, accept: str | None) -> Encodings:
    """Body and answer encodings for a ``Content-Type`` and ``Accept`` pair."""
    sent = wire.media_type_from_header(content_type)
    return Encodings(sent or _JSON, wire.media_type_from_header(accept) or sent or _JSON)


def answer_type(request: Request) -> str:
    """The media type to answer ``request`` in."""
    headers = read_headers(request)
    return negotiate(headers.content_type, headers.accept).response
