"""Numbers and arrays between their wire forms and NumPy.

Two directions live here because they share one rule set:

- *to JSON*: arrays become nested lists and non-finite floats become the strings
  ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JSON has no literal for them).
- *from the wire*: a JSON list, a JSON number, one of those strings or a decoded
  MessagePack array becomes a NumPy value of a required dtype and shape. The conversion
  never wraps or overflows silently: a value that the dtype cannot hold exactly (``1.5`` for
  an integer, ``300`` for ``uint8``, ``1e300`` for ``float32``) is a :class:`WireError`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agentgpt.wire.errors import WireError

__all__ = [
    "NONFINITE_TOKENS",
    "array_to_json",
    "coerce_array",
    "coerce_integer",
    "float_to_json",
    "numeric_array",
    "scalar_to_json",
    "tokens_to_floats",
]

NONFINITE_TOKENS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# float16/float32 arrays up to this many elements are written with the shortest decimal
# that reads back to the same value ("4.8" rather than "4.800000190734863"), which keeps
# the JSON that people read with curl legible. The formatting pass costs about a
# microsecond per element, so larger arrays (vector batches, images) are written as their
# exact float64 values instead: both forms decode to identical values.
SHORT_REPR_MAX_ELEMENTS = 128

_REAL_KINDS = frozenset("biuf")
_INTEGER_LIMITS: dict[np.dtype, tuple[int, int]] = {}


def _limits(dtype: np.dtype) -> tuple[int, int]:
    """``(min, max)`` of an integer dtype; ``np.iinfo`` is too slow for every action."""
    limits = _INTEGER_LIMITS.get(dtype)
    if limits is None:
        info = np.iinfo(dtype)
        limits = _INTEGER_LIMITS[dtype] = (int(info.min), int(info.max))
    return limits


def float_to_json(value: float) -> float | str:
    """A Python float for JSON: itself when finite, else its string token."""
    if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _short_doubles(array: np.ndarray) -> np.ndarray:
    """float64 values that print short but convert back to exactly ``array``'s values."""
    doubles = array.astype(str).astype(np.float64)
    inexact = doubles.astype(array.dtype) != array
    if inexact.any():  # NaN compares unequal; copying its exact value is harmless
        doubles[inexact] = array[inexact]
    return doubles


def _as_doubles(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.float64:
        return array
    if array.dtype.itemsize < 8 and array.size <= SHORT_REPR_MAX_ELEMENTS:
        return _short_doubles(array)
    return array.astype(np.float64)


def array_to_json(array: np.ndarray) -> Any:
    """The JSON form of a numeric, bool or string array: nested lists in C order.

    Object arrays are not handled here; the caller walks their elements.
    """
    kind = array.dtype.kind
    if kind in "biuU":
        return array.tolist()
    if kind != "f":
        raise WireError(f"arrays of dtype {array.dtype} cannot be encoded")
    doubles = _as_doubles(array)
    if array.ndim == 0:
        return float_to_json(doubles.item())
    finite = np.isfinite(doubles)
    if finite.all():
        return doubles.tolist()
    tokens = doubles.astype(object)
    tokens[np.isnan(doubles)] = "NaN"
    tokens[np.isposinf(doubles)] = "Infinity"
    tokens[np.isneginf(doubles)] = "-Infinity"
    return tokens.tolist()


def scalar_to_json(value: np.generic) -> Any:
    """A NumPy scalar as a plain JSON-ready Python value."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return array_to_json(np.asarray(value))
    if isinstance(value, np.str_):
        return str(value)
    raise WireError(f"numpy scalars of type {type(value).__name__} cannot be encoded")


def tokens_to_floats(obj: Any) -> Any:
    """Nested lists with the non-finite strings turned into floats; other strings fail.

    Numbers pass through untouched (Python ints keep their full precision).
    """
    if isinstance(obj, (list, tuple)):
        return [tokens_to_floats(item) for item in obj]
    if isinstance(obj, str):
        try:
            return NONFINITE_TOKENS[obj]
        except KeyError:
            raise WireError(f"expected a number, got the string {obj!r}") from None
    if obj is None or isinstance(obj, (dict, bytes)):
        raise WireError(f"expected a number, got {_describe(obj)}")
    return obj


def _describe(obj: Any) -> str:
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(obj).__name__} {text}"


def numeric_array(obj: Any) -> np.ndarray:
    """Any wire form of a number or an n-d array of numbers, as a real-valued ndarray.

    The dtype is whatever NumPy infers (bool, int64, uint64 or float64 for JSON input); the
    caller casts with :func:`cast_array`.
    """
    if isinstance(obj, np.ndarray):
        array = obj
    elif isinstance(obj, str):
        if obj not in NONFINITE_TOKENS:
            raise WireError(f"expected a number, got the string {obj!r}")
        array = np.asarray(NONFINITE_TOKENS[obj])
    elif isinstance(obj, (list, tuple, int, float, np.generic)):
        try:
            array = np.asarray(obj)
            if array.dtype.kind in "OUS":
                array = np.asarray(tokens_to_floats(obj))
        except (ValueError, OverflowError) as exc:
            if isinstance(exc, WireError):
                raise
            raise WireError(f"expected a rectangular array of numbers: {exc}") from None
    else:
        raise WireError(f"expected a number or an array, got {_describe(obj)}")
    if array.dtype.kind not in _REAL_KINDS:
        if array.dtype.kind == "O":
            raise WireError("expected numbers, got integers too large for 64 bits or mixed values")
        raise WireError(f"expected numbers, got an array of dtype {array.dtype}")
    return array


def _first(array: np.ndarray, mask: np.ndarray) -> Any:
    return array[mask].flat[0].item()


def _cast_to_integer(array: np.ndarray, dtype: np.dtype, allow_bool: bool) -> np.ndarray:
    kind = array.dtype.kind
    low, high = _limits(dtype)
    if kind == "b":
        if not allow_bool:
            raise WireError(f"expected integers ({dtype}), got booleans")
        return array.astype(dtype)
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise WireError(f"expected integers ({dtype}), got {_first(array, bad)}")
        bad = array != np.floor(array)
        if bad.any():
            raise WireError(f"expected integers ({dtype}), got {_first(array, bad)}")
        # The exclusive upper limit max + 1 is a power of two, exact in float64.
        bad = (array < float(low)) | (array >= float(high) + 1.0)
    else:
        bad = (array < low) | (array > high)
    if bad.any():
        raise WireError(f"{_first(array, bad)} is out of range for {dtype}")
    return array.astype(dtype)


def _cast_to_float(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype.kind == "b":
        raise WireError(f"expected numbers ({dtype}), got booleans")
    if array.dtype.kind == "f" and array.dtype.itemsize <= dtype.itemsize:
        return array.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(dtype)
    overflow = np.isinf(out) & ~np.isinf(array)
    if overflow.any():
        raise WireError(f"{_first(array, overflow)} is out of range for {dtype}")
    return out


def _cast_to_bool(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "b":
        return array
    bad = (array != 0) & (array != 1)
    if bad.any():
        raise WireError(f"expected booleans (or 0/1), got {_first(array, bad)}")
    return array.astype(np.bool_)


def cast_array(array: np.ndarray, dtype: np.dtype, allow_bool: bool = False) -> np.ndarray:
    """``array`` in ``dtype``, refusing any value the dtype cannot hold exactly.

    ``allow_bool`` lets booleans stand for 0/1 in an integer dtype (MultiBinary).
    Float-to-narrower-float casts round, as JSON numbers always do; only overflow to
    infinity is refused.
    """
    if array.dtype == dtype:
        return array
    kind = dtype.kind
    if kind in "iu":
        return _cast_to_integer(array, dtype, allow_bool)
    if kind == "f":
        return _cast_to_float(array, dtype)
    if kind == "b":
        return _cast_to_bool(array)
    raise WireError(f"values of dtype {dtype} are not supported")


def coerce_array(
    obj: Any, dtype: np.dtype, shape: tuple[int, ...], allow_bool: bool = False
) -> np.ndarray:
    """The array of exactly ``dtype`` and ``shape`` that ``obj`` stands for."""
    if type(obj) is np.ndarray and obj.dtype == dtype and obj.shape == shape:
        return obj
    array = numeric_array(obj)
    if array.shape != shape:
        # JSON cannot spell the inner sizes of an empty array ([] for shape (0, 4)).
        if array.size != 0 or math.prod(shape) != 0:
            raise WireError(f"expected shape {shape}, got shape {array.shape}")
        array = array.reshape(shape)
    return cast_array(array, dtype, allow_bool)


def coerce_integer(obj: Any, dtype: np.dtype) -> Any:
    """The ``dtype`` scalar that ``obj`` stands for: an integer or a whole-number float."""
    if type(obj) is int:
        value = obj
    elif isinstance(obj, (bool, np.bool_)):
        raise WireError(f"expected an integer, got {obj!r}")
    elif isinstance(obj, (int, np.integer)):
        value = int(obj)
    elif isinstance(obj, (float, np.floating)):
        number = float(obj)
        if not number.is_integer():
            raise WireError(f"expected an integer, got {number!r}")
        value = int(number)
    elif isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype.kind in "iuf":
        return coerce_integer(obj[()], dtype)
    else:
        raise WireError(f"expected an integer, got {_describe(obj)}")
    low, high = _limits(dtype)
    if not low <= value <= high:
        raise WireError(f"{value} is out of range for {dtype}")
    return dtype.type(value)
