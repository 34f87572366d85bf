"""Media types of the two encodings and HTTP header negotiation.

The server answers in the encoding the client asked for in ``Accept``, else in the one it
sent (``Content-Type``), else JSON. Both headers go through :func:`media_type_from_header`,
so aliases, parameters and q-values are handled in one place.
"""

from __future__ import annotations

__all__ = ["JSON_MEDIA_TYPE", "MSGPACK_MEDIA_TYPE", "media_type_from_header"]

JSON_MEDIA_TYPE = "application/json"
MSGPACK_MEDIA_TYPE = "application/msgpack"

# Every spelling a client may send, mapped to the canonical type. ``x-msgpack`` is what
# many MessagePack libraries and older clients use.
_ALIASES = {
    "application/json": JSON_MEDIA_TYPE,
    "application/msgpack": MSGPACK_MEDIA_TYPE,
    "application/x-msgpack": MSGPACK_MEDIA_TYPE,
}


def _quality(params: list[str]) -> float | None:
    """The ``q`` parameter of one media range; ``None`` when it is malformed."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


def media_type_from_header(value: str | None) -> str | None:
    """The supported media type a ``Content-Type`` or ``Accept`` header names, if any.

    Parameters (``charset=utf-8``) are ignored. For an ``Accept`` list the supported type
    with the highest q-value wins, the earlier one on a tie; ``q=0`` means "not this one".
    Wildcards (``*/*``, ``application/*``) name no encoding, so they give ``None`` and
    the caller falls back to its default.
    """
    if not value:
        return None
    best: str | None = None
    best_q = 0.0
    for media_range in value.split(","):
        kind, *params = media_range.split(";")
        canonical = _ALIASES.get(kind.strip().lower())
        if canonical is None:
            continue
        q = _quality(params)
        if q is not None and q > best_q:
            best, best_q = canonical, q
    return best
