"""``encode`` / ``decode``: one entry point for both encodings."""

from __future__ import annotations

from typing import Any

from agentgpt.wire.errors import WireError
from agentgpt.wire.jsoncodec import decode_json, encode_json
from agentgpt.wire.media import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, media_type_from_header
from agentgpt.wire.msgpackcodec import decode_msgpack, encode_msgpack

__all__ = ["decode", "encode"]


def _canonical(media_type: str) -> str:
    if media_type in (MSGPACK_MEDIA_TYPE, JSON_MEDIA_TYPE):
        return media_type
    canonical = media_type_from_header(media_type)
    if canonical is None:
        raise WireError(f"unsupported media type {media_type!r}")
    return canonical


def encode(obj: Any, media_type: str) -> bytes:
    """``obj`` (maps, lists, tuples, scalars, ``None``, NumPy arrays and scalars) as bytes.

    JSON: arrays become nested lists, non-finite floats the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``. MessagePack: arrays become extension type 1, object
    arrays lists. Raises :class:`WireError` for values neither encoding can carry.
    """
    if _canonical(media_type) == MSGPACK_MEDIA_TYPE:
        return encode_msgpack(obj)
    return encode_json(obj)


def decode(data: bytes, media_type: str) -> Any:
    """The value ``data`` encodes; an empty body is an empty map, as the protocol says.

    JSON gives plain Python values (arrays stay lists, non-finite floats stay strings
    until a space types them). MessagePack arrays come back as writeable NumPy arrays in
    native byte order. Raises :class:`WireError` for bytes that do not decode.
    """
    if not data:
        return {}
    if isinstance(data, memoryview):
        data = data.tobytes()
    if _canonical(media_type) == MSGPACK_MEDIA_TYPE:
        return decode_msgpack(data)
    return decode_json(data)
