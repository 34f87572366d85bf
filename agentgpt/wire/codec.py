"""``encode`` / ``decode``: one entry point for both encodings."""

from __future__ import annotations

from typing import Any

from agentgpt.wire.errors import WireError
from agentgpt.wire.jsoncodec import decode_json, encode_json
from agentgpt.wire.media import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, media_type_from_header
from agentgpt.wire.msgpackcodec import decode_msgpack, encode_msgpack

__all__ = ["decode", "encode", "with_string_keys"]


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


def with_string_keys(obj: Any) -> Any:
    """``obj`` with every map key made a string (``str(key)``), nested maps and lists too.

    Untyped maps from env code (info dicts) may use integer or other keys. JSON writes
    them as strings anyway, while MessagePack would carry them as they are and readers
    refuse non-string keys; converting them once, where such a map enters the wire, gives
    both encodings the same answer. Returns ``obj`` itself (not a copy) when nothing needs
    converting.
    """
    if isinstance(obj, dict):
        converted = {
            (key if isinstance(key, str) else str(key)): with_string_keys(value)
            for key, value in obj.items()
        }
        if all(
            a is b and (ka is kb)
            for (ka, a), (kb, b) in zip(obj.items(), converted.items(), strict=True)
        ):
            return obj
        return converted
    if isinstance(obj, (list, tuple)):
        items = [with_string_keys(item) for item in obj]
        if all(a is b for a, b in zip(obj, items, strict=True)):
            return obj
        return type(obj)(items) if isinstance(obj, list) else tuple(items)
    return obj
