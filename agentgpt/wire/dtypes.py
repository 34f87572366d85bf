"""Reading a NumPy dtype named by a peer, safely and once.

Dtype strings arrive from the network (MessagePack array headers, type notes), so each is
checked before NumPy builds anything from it: a short string, a plain dtype of an allowed
kind (no records, no sub-arrays), and optionally a bounded item size. Accepted strings are
cached, so the hot path pays one dict lookup.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentgpt.wire.errors import WireError

__all__ = ["checked_dtype"]

_CACHE_LIMIT = 1024
_cache: dict[tuple[str, str], np.dtype] = {}


def checked_dtype(
    text: Any,
    *,
    kinds: str,
    what: str,
    max_length: int = 8,
    max_itemsize: int | None = None,
) -> np.dtype:
    """The dtype ``text`` names, if it is one of ``kinds`` (NumPy kind letters); else a
    :class:`WireError` that calls it ``what`` (``"array dtype"``)."""
    key = (text, kinds) if isinstance(text, str) else None
    dtype = _cache.get(key) if key is not None else None
    if dtype is not None:
        return dtype
    if key is None or len(text) > max_length:
        raise WireError(f"{what} must be a short string like '<f4', got {text!r}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise WireError(f"unknown {what} {text!r}") from None
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"unsupported {what} {text!r}")
    if max_itemsize is not None and dtype.itemsize > max_itemsize:
        raise WireError(f"{what} {text!r} is too wide")
    if len(_cache) < _CACHE_LIMIT:
        _cache[key] = dtype
    return dtype
