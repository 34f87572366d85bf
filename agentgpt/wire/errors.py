"""Exceptions raised by the wire format.

Both derive from ``ValueError`` so that callers which only care about "the peer sent
something unusable" can catch one familiar type; the server maps them to 400/422.
"""

from __future__ import annotations

__all__ = ["UnsupportedSpaceError", "WireError"]


class WireError(ValueError):
    """Bytes that cannot be decoded, or a value that does not fit its space."""


class UnsupportedSpaceError(WireError):
    """A Gymnasium space type that the protocol cannot carry (``Graph``, custom spaces)."""
