"""Gymnasium spaces as wire maps, and back.

A space travels as a map with a ``type`` and type-specific fields (see
``docs/protocol.md``, "Spaces"). The reverse direction rebuilds a space that compares
equal and samples the same way: Box keeps which bounds are infinite, Dict keeps its key
order, Text its character order, Discrete and MultiDiscrete their dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from agentgpt.wire.errors import UnsupportedSpaceError, WireError
from agentgpt.wire.numeric import (
    cast_array,
    coerce_array,
    coerce_integer,
    numeric_array,
    tokens_to_floats,
)

__all__ = ["space_from_wire", "space_to_wire"]

_INT64 = np.dtype(np.int64)
# Integers up to this magnitude are exact in float64, so an integer Box's bounds can share
# a float64 array with the infinities that mark its unbounded entries.
_FLOAT64_EXACT = 2**53


def _find(table: dict[type, Any], space: Any) -> Any:
    """The table entry for ``space``'s class or its nearest registered base class."""
    for cls in type(space).__mro__:
        entry = table.get(cls)
        if entry is not None:
            return entry
    raise UnsupportedSpaceError(
        f"{type(space).__name__} spaces cannot be sent over the wire; supported: "
        "Box, Discrete, MultiDiscrete, MultiBinary, Text, Dict, Tuple, Sequence, OneOf"
    )


# --------------------------------------------------------------------------- to the wire


def _bound_to_wire(values: np.ndarray, bounded: np.ndarray, infinity: float) -> Any:
    """An integer Box's bound with its unbounded entries written as infinities.

    Gymnasium stores an infinite integer bound as the dtype's limit plus a "bounded" flag;
    the flag decides how ``sample`` draws, so it must survive the trip.
    """
    if values.dtype.kind not in "iu" or bounded.all():
        return values.copy()
    finite = values[bounded]
    if finite.size == 0 or ((finite >= -_FLOAT64_EXACT).all() and (finite <= _FLOAT64_EXACT).all()):
        out = values.astype(np.float64)
    else:  # bounds too large for float64: exact Python ints in nested lists
        out = values.astype(object)
    out[~bounded] = infinity
    return out if out.dtype != object else out.tolist()


def _box_to_wire(space: spaces.Box) -> dict[str, Any]:
    return {
        "type": "Box",
        "shape": list(space.shape),
        "dtype": space.dtype.name,
        "low": _bound_to_wire(space.low, space.bounded_below, -math.inf),
        "high": _bound_to_wire(space.high, space.bounded_above, math.inf),
    }


def _discrete_to_wire(space: spaces.Discrete) -> dict[str, Any]:
    return {
        "type": "Discrete",
        "n": int(space.n),
        "start": int(space.start),
        "dtype": space.dtype.name,
    }


def _multi_discrete_to_wire(space: spaces.MultiDiscrete) -> dict[str, Any]:
    return {
        "type": "MultiDiscrete",
        "nvec": space.nvec.copy(),
        "start": space.start.copy(),
        "dtype": space.dtype.name,
        "shape": list(space.shape),
    }


def _multi_binary_to_wire(space: spaces.MultiBinary) -> dict[str, Any]:
    n = space.n
    return {"type": "MultiBinary", "n": int(n) if isinstance(n, int) else [int(i) for i in n]}


def _text_to_wire(space: spaces.Text) -> dict[str, Any]:
    return {
        "type": "Text",
        "min_length": int(space.min_length),
        "max_length": int(space.max_length),
        "charset": "".join(space.character_list),
    }


def _dict_to_wire(space: spaces.Dict) -> dict[str, Any]:
    for key in space.spaces:
        if not isinstance(key, str):
            raise UnsupportedSpaceError(f"Dict space keys must be strings, got {key!r}")
    return {
        "type": "Dict",
        "spaces": {key: space_to_wire(sub) for key, sub in space.spaces.items()},
    }


def _tuple_to_wire(space: spaces.Tuple) -> dict[str, Any]:
    return {"type": "Tuple", "spaces": [space_to_wire(sub) for sub in space.spaces]}


def _sequence_to_wire(space: spaces.Sequence) -> dict[str, Any]:
    return {
        "type": "Sequence",
        "space": space_to_wire(space.feature_space),
        "stack": bool(space.stack),
    }


def _one_of_to_wire(space: spaces.OneOf) -> dict[str, Any]:
    return {"type": "OneOf", "spaces": [space_to_wire(sub) for sub in space.spaces]}


_TO_WIRE: dict[type, Callable[[Any], dict[str, Any]]] = {
    spaces.Box: _box_to_wire,
    spaces.Discrete: _discrete_to_wire,
    spaces.MultiDiscrete: _multi_discrete_to_wire,
    spaces.MultiBinary: _multi_binary_to_wire,
    spaces.Text: _text_to_wire,
    spaces.Dict: _dict_to_wire,
    spaces.Tuple: _tuple_to_wire,
    spaces.Sequence: _sequence_to_wire,
    spaces.OneOf: _one_of_to_wire,
}


def space_to_wire(space: gymnasium.Space) -> dict[str, Any]:
    """The wire map of ``space``, ready for :func:`agentgpt.wire.encode`.

    Raises :class:`UnsupportedSpaceError` naming the type for spaces the protocol cannot
    carry (``Graph``, custom ``Space`` subclasses).
    """
    if not isinstance(space, gymnasium.Space):
        raise UnsupportedSpaceError(f"expected a gymnasium.Space, got {type(space).__name__}")
    return _find(_TO_WIRE, space)(space)


# ------------------------------------------------------------------------- from the wire


def _field(obj: Mapping[str, Any], name: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise WireError(f"{obj['type']} space needs the field {name!r}") from None


def _int_field(obj: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default) if default is not None else _field(obj, name)
    try:
        return int(coerce_integer(value, _INT64))
    except WireError as exc:
        raise WireError(f"{obj['type']} field {name!r}: {exc}") from None


def _dtype_field(obj: Mapping[str, Any], kinds: str, default: str | None = None) -> np.dtype:
    name = obj.get("dtype", default) if default is not None else _field(obj, "dtype")
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in kinds or dtype.fields is not None:
        raise WireError(f"{obj['type']} field 'dtype': unsupported dtype {name!r}")
    return dtype


def _shape_field(obj: Mapping[str, Any]) -> tuple[int, ...]:
    shape = _field(obj, "shape")
    if not isinstance(shape, (list, tuple)):
        raise WireError(f"{obj['type']} field 'shape' must be a list, got {shape!r}")
    dims = tuple(int(coerce_integer(dim, _INT64)) for dim in shape)
    if any(dim < 0 for dim in dims):
        raise WireError(f"{obj['type']} field 'shape' must not be negative, got {shape!r}")
    return dims


def _array_field(obj: Mapping[str, Any], name: str, dtype: np.dtype, shape: Any) -> np.ndarray:
    try:
        return coerce_array(_field(obj, name), dtype, shape)
    except WireError as exc:
        raise WireError(f"{obj['type']} field {name!r}: {exc}") from None


def _int_bound(
    value: Any, dtype: np.dtype, shape: tuple[int, ...], infinity: float
) -> tuple[np.ndarray, np.ndarray]:
    """An integer Box bound and the mask of its entries given as ``infinity``.

    Goes through Python objects so that int64/uint64 bounds beyond float64's exact range
    stay exact next to the infinities.
    """
    if isinstance(value, np.ndarray):
        items = value.astype(object)
    else:
        items = np.array(tokens_to_floats(value), dtype=object)
    if items.shape != shape:
        if items.size != 0 or math.prod(shape) != 0:
            raise WireError(f"expected shape {shape}, got shape {items.shape}")
        items = items.reshape(shape)
    unbounded = np.asarray(items == infinity, dtype=bool).reshape(shape)
    if unbounded.any() and dtype.kind != "i":
        raise WireError(f"{dtype} bounds cannot be infinite")
    info = np.iinfo(dtype)
    out = np.empty(shape, dtype=dtype)
    out[unbounded] = info.min if infinity < 0 else info.max
    out[~unbounded] = cast_array(numeric_array(items[~unbounded].tolist()), dtype)
    return out, unbounded


def _box_bound(obj: Mapping[str, Any], name: str, dtype: np.dtype, shape: Any) -> Any:
    value = _field(obj, name)
    infinity = -math.inf if name == "low" else math.inf
    try:
        if dtype.kind in "iu":
            return _int_bound(value, dtype, shape, infinity)
        return coerce_array(value, dtype, shape), None
    except WireError as exc:
        raise WireError(f"Box field {name!r}: {exc}") from None


def _box_from_wire(obj: Mapping[str, Any]) -> spaces.Box:
    dtype = _dtype_field(obj, "iufb")
    shape = _shape_field(obj)
    low, low_unbounded = _box_bound(obj, "low", dtype, shape)
    high, high_unbounded = _box_bound(obj, "high", dtype, shape)
    box = spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if low_unbounded is not None:
        box.bounded_below = box.bounded_below & ~low_unbounded
    if high_unbounded is not None:
        box.bounded_above = box.bounded_above & ~high_unbounded
    return box


def _discrete_from_wire(obj: Mapping[str, Any]) -> spaces.Discrete:
    dtype = _dtype_field(obj, "iu", default="int64")
    return spaces.Discrete(_int_field(obj, "n"), start=_int_field(obj, "start", 0), dtype=dtype)


def _multi_discrete_from_wire(obj: Mapping[str, Any]) -> spaces.MultiDiscrete:
    dtype = _dtype_field(obj, "iu", default="int64")
    shape = _shape_field(obj) if "shape" in obj else numeric_array(_field(obj, "nvec")).shape
    nvec = _array_field(obj, "nvec", dtype, shape)
    start = _array_field(obj, "start", dtype, shape) if "start" in obj else None
    return spaces.MultiDiscrete(nvec, dtype=dtype, start=start)


def _multi_binary_from_wire(obj: Mapping[str, Any]) -> spaces.MultiBinary:
    n = _field(obj, "n")
    if isinstance(n, (list, tuple, np.ndarray)):
        return spaces.MultiBinary([int(coerce_integer(dim, _INT64)) for dim in n])
    return spaces.MultiBinary(_int_field(obj, "n"))


def _text_from_wire(obj: Mapping[str, Any]) -> spaces.Text:
    charset = obj.get("charset")
    if charset is not None and not isinstance(charset, str):
        raise WireError(f"Text field 'charset' must be a string, got {type(charset).__name__}")
    kwargs: dict[str, Any] = {"min_length": _int_field(obj, "min_length", 1)}
    if charset is not None:
        kwargs["charset"] = charset
    return spaces.Text(_int_field(obj, "max_length"), **kwargs)


def _nested(label: str, wire: Any) -> gymnasium.Space:
    try:
        return space_from_wire(wire)
    except UnsupportedSpaceError as exc:
        raise UnsupportedSpaceError(f"{label}: {exc}") from None
    except WireError as exc:
        raise WireError(f"{label}: {exc}") from None


def _space_list(obj: Mapping[str, Any]) -> list[gymnasium.Space]:
    items = _field(obj, "spaces")
    if not isinstance(items, (list, tuple)):
        raise WireError(f"{obj['type']} field 'spaces' must be a list")
    return [_nested(f"{obj['type']} space {i}", item) for i, item in enumerate(items)]


def _dict_from_wire(obj: Mapping[str, Any]) -> spaces.Dict:
    items = _field(obj, "spaces")
    if not isinstance(items, Mapping):
        raise WireError("Dict field 'spaces' must be a map")
    # A list of pairs keeps the wire order; sort_keys=False keeps batch_space from
    # reordering it later.
    pairs = [(key, _nested(f"Dict key {key!r}", item)) for key, item in items.items()]
    return spaces.Dict(pairs, sort_keys=False)


def _tuple_from_wire(obj: Mapping[str, Any]) -> spaces.Tuple:
    return spaces.Tuple(_space_list(obj))


def _sequence_from_wire(obj: Mapping[str, Any]) -> spaces.Sequence:
    stack = obj.get("stack", False)
    if not isinstance(stack, bool):
        raise WireError(f"Sequence field 'stack' must be a boolean, got {stack!r}")
    return spaces.Sequence(_nested("Sequence space", _field(obj, "space")), stack=stack)


def _one_of_from_wire(obj: Mapping[str, Any]) -> spaces.OneOf:
    return spaces.OneOf(_space_list(obj))


_FROM_WIRE: dict[str, Callable[[Mapping[str, Any]], gymnasium.Space]] = {
    "Box": _box_from_wire,
    "Discrete": _discrete_from_wire,
    "MultiDiscrete": _multi_discrete_from_wire,
    "MultiBinary": _multi_binary_from_wire,
    "Text": _text_from_wire,
    "Dict": _dict_from_wire,
    "Tuple": _tuple_from_wire,
    "Sequence": _sequence_from_wire,
    "OneOf": _one_of_from_wire,
}


def space_from_wire(obj: Any) -> gymnasium.Space:
    """The Gymnasium space a wire map describes (from either encoding).

    Raises :class:`WireError` for a malformed map and :class:`UnsupportedSpaceError` for a
    ``type`` this version does not know.
    """
    if not isinstance(obj, Mapping):
        raise WireError(f"a space must be a map, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise WireError("a space map needs a string 'type'")
    build = _FROM_WIRE.get(kind)
    if build is None:
        raise UnsupportedSpaceError(f"unknown space type {kind!r}")
    try:
        return build(obj)
    except WireError:
        raise
    except RecursionError:
        raise WireError("space is nested too deeply") from None
    except (ValueError, TypeError, AssertionError, OverflowError) as exc:
        raise WireError(f"invalid {kind} space: {exc}") from None
