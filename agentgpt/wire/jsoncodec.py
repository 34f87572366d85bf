"""JSON encoding: plain data, with arrays as nested lists and non-finite floats as strings.

``json`` cannot be taught about NumPy values or non-finite floats through its hooks (floats
never reach ``default``), so encoding first rewrites the tree into plain JSON values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from agentgpt.wire.errors import WireError
from agentgpt.wire.numeric import array_to_json, float_to_json, scalar_to_json

__all__ = ["decode_json", "encode_json", "to_json_tree"]

_PLAIN = (str, int, bool, type(None))
# One shared encoder: json.dumps with options builds a new one on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _key(key: Any) -> Any:
    """A map key JSON can write; ``json`` itself turns int/float/bool/None keys into text."""
    if isinstance(key, (str, *_PLAIN, float)):
        return key
    if isinstance(key, np.generic):
        return scalar_to_json(key)
    raise WireError(f"map keys must be strings, got {type(key).__name__}")


def to_json_tree(obj: Any) -> Any:
    """``obj`` rewritten into values ``json.dumps(..., allow_nan=False)`` accepts."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind is float:
        return float_to_json(obj)
    if kind is dict:
        return {_key(k): to_json_tree(v) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return [to_json_tree(item) for item in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return to_json_tree(obj.tolist())
        return array_to_json(obj)
    if isinstance(obj, np.generic):
        return scalar_to_json(obj)
    # Subclasses of the plain types (OrderedDict, namedtuple, IntEnum, str subclasses).
    if isinstance(obj, Mapping):
        return {_key(k): to_json_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_tree(item) for item in obj]
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float_to_json(float(obj))
    raise WireError(f"cannot encode a value of type {type(obj).__name__} as JSON")


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj``."""
    tree = to_json_tree(obj)
    try:
        return _ENCODER.encode(tree).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError included
        raise WireError(f"cannot encode as JSON: {exc}") from exc


def decode_json(data: bytes) -> Any:
    """Plain Python values; lists stay lists and the non-finite strings stay strings.

    The bare literals ``NaN`` and ``Infinity`` that some JSON writers emit are read as
    floats, a leniency towards clients that do not follow the string convention.
    """
    try:
        return json.loads(data)
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeDecodeError included
        raise WireError(f"malformed JSON body: {exc}") from exc
