"""Python and NumPy types that the wire forms lose, carried beside the values.

Both encodings carry values, not Python types. An env that returns the Python int ``3`` for
a ``Discrete`` observation and one that returns ``np.int64(3)`` send the same integer; a
tuple in an info dict arrives as a list, a NumPy scalar as a plain number, and in JSON an
``int8`` array arrives as a list of numbers. A *type note* says what each such value was,
so that a client can hand back exactly what the env returned (``docs/protocol.md``,
"Types"). Notes are plain data, the same in both encodings:

=========================================== ==================================================
note                                        the value is
=========================================== ==================================================
``null``                                    what the default reading gives (nothing to change)
``"int"``, ``"float"``, ``"bool"``          that Python scalar
a NumPy dtype string (``"<i8"``, ``"|b1"``) a NumPy scalar of that dtype
``{"array": dtype}``                        an ndarray of that dtype; optional ``"shape"``
                                            where the wire form cannot tell it (zero-size or
                                            object arrays), ``"items"`` (object arrays): one
                                            note per element, in C order
``{"tuple": notes}`` / ``{"list": notes}``  a tuple / a list; ``notes`` has one note per item,
                                            or is ``null`` when no item needs one
``{"dict": {key: note}}``                   a map; only the keys whose values need a note
=========================================== ==================================================

The *default reading* a note is relative to depends on where the value sits:

- values of a space (observations) are read with :func:`~agentgpt.wire.value_from_wire`,
  which gives the space's canonical types; :func:`value_types` notes what differs from
  those.
- untyped values (infos) are read as plain JSON data (lists, numbers, strings, maps);
  :func:`data_types` notes everything that is not plain: NumPy scalars and arrays (also
  when MessagePack already carried the array typed, so that a note never depends on the
  encoding), tuples and non-finite floats (JSON strings).

:func:`apply_types` turns a value of the default reading into the value the note
describes. Only built-in and NumPy types are described; instances of other classes (an
``IntEnum``, an ``OrderedDict``) arrive as the plain value they encode to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from agentgpt.wire.dtypes import checked_dtype
from agentgpt.wire.errors import WireError
from agentgpt.wire.values import _stacked_space

__all__ = ["apply_types", "data_types", "object_array", "value_types"]

_PLAIN = (str, int, bool, type(None))
_PYTHON_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool}
#: Kinds of dtype a note may name: numbers, booleans, text, bytes, objects (every kind an
#: encoding carries).
_NOTE_KINDS = "biufUSO"
_MAX_ITEMSIZE = 1 << 20

# --------------------------------------------------------------------------- notes of data


def data_types(value: Any) -> Any:
    """The note for an untyped value (an info dict or anything inside one), or ``None``.

    ``None`` means a plain reading of the wire form already gives ``value`` back: strings,
    Python ints and bools, finite Python floats, ``None``, and lists and string-keyed dicts
    of those.
    """
    kind = type(value)
    if kind in _PLAIN:
        return None
    if kind is float:
        return None if math.isfinite(value) else "float"
    if kind is dict:
        entries = {}
        for key, item in value.items():
            note = data_types(item)
            if note is not None:
                entries[key] = note
        return {"dict": entries} if entries else None
    if kind is list or kind is tuple:
        notes = [data_types(item) for item in value]
        if not any(note is not None for note in notes):
            return None if kind is list else {"tuple": None}
        return {"list" if kind is list else "tuple": notes}
    if isinstance(value, np.ndarray):
        return _array_note(value, data_types)
    if isinstance(value, np.generic):
        return value.dtype.str
    return None


def _exact_types(value: Any) -> Any:
    """A note that describes ``value`` whatever it is read as (``None`` for strings and
    ``None``, which every reading gives back as they are)."""
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int"
    if kind is float:
        return "float"
    if kind is list or kind is tuple:
        notes = [_exact_types(item) for item in value]
        key = "list" if kind is list else "tuple"
        return {key: notes if any(note is not None for note in notes) else None}
    if kind is dict:
        return {"dict": {k: n for k, v in value.items() if (n := _exact_types(v)) is not None}}
    if isinstance(value, np.ndarray):
        return _array_note(value, _exact_types)
    if isinstance(value, np.generic):
        return value.dtype.str
    return None


def _array_note(array: np.ndarray, item_note: Callable[[Any], Any]) -> dict[str, Any]:
    note: dict[str, Any] = {"array": array.dtype.str}
    if array.dtype.hasobject:
        if array.ndim != 1:
            note["shape"] = list(array.shape)
        items = [item_note(item) for item in array.flat]
        if any(n is not None for n in items):
            note["items"] = items
    elif array.size == 0 and array.ndim > 1:
        note["shape"] = list(array.shape)  # JSON writes every zero-size array as []
    return note


# --------------------------------------------------------------------------- notes of values


def _array_space_types(space: Any, value: Any) -> Any:
    if type(value) is np.ndarray and value.dtype == space.dtype:
        return None
    return _exact_types(value)


def _discrete_types(space: spaces.Discrete, value: Any) -> Any:
    if type(value) is space.dtype.type:
        return None
    return _exact_types(value)


def _text_types(space: spaces.Text, value: Any) -> Any:
    return None if type(value) is str else _exact_types(value)


def _dict_types(space: spaces.Dict, value: Any) -> Any:
    entries = {}
    for key, item in value.items():
        note = value_types(space.spaces[key], item)
        if note is not None:
            entries[key] = note
    return {"dict": entries} if entries else None


def _items_note(container: Any, notes: list[Any]) -> Any:
    """The note of a Tuple-like value read as a tuple."""
    has_notes = any(note is not None for note in notes)
    if type(container) is tuple:
        return {"tuple": notes} if has_notes else None
    if type(container) is list:
        return {"list": notes if has_notes else None}
    return None  # an array standing for a tuple: read as the tuple it is


def _tuple_types(space: spaces.Tuple, value: Any) -> Any:
    notes = [value_types(sub, item) for sub, item in zip(space.spaces, value, strict=True)]
    return _items_note(value, notes)


def _sequence_types(space: spaces.Sequence, value: Any) -> Any:
    if space.stack:
        return value_types(_stacked_space(space, value), value)
    return _items_note(value, [value_types(space.feature_space, item) for item in value])


def _one_of_types(space: spaces.OneOf, value: Any) -> Any:
    index, item = value
    index_note = None if type(index) is np.int64 else _exact_types(index)
    return _items_note(value, [index_note, value_types(space.spaces[int(index)], item)])


_VALUE_TYPES: dict[type, Callable[[Any, Any], Any]] = {
    spaces.Box: _array_space_types,
    spaces.MultiDiscrete: _array_space_types,
    spaces.MultiBinary: _array_space_types,
    spaces.Discrete: _discrete_types,
    spaces.Text: _text_types,
    spaces.Dict: _dict_types,
    spaces.Tuple: _tuple_types,
    spaces.Sequence: _sequence_types,
    spaces.OneOf: _one_of_types,
}


def value_types(space: gymnasium.Space, value: Any) -> Any:
    """The note for a value of ``space`` (one that ``value_to_wire`` accepted), or ``None``
    when :func:`~agentgpt.wire.value_from_wire` gives back its exact types.

    What it notes: a Python ``int`` where the space's canonical value is a NumPy integer
    (Taxi's observations), a tuple where a list is expected or the reverse, an array of
    another dtype than the space's, and so on inside Dict, Tuple, Sequence and OneOf.
    """
    convert = _VALUE_TYPES.get(type(space))
    if convert is None:
        for cls in type(space).__mro__:
            convert = _VALUE_TYPES.get(cls)
            if convert is not None:
                _VALUE_TYPES[type(space)] = convert
                break
        else:
            return None
    return convert(space, value)


def object_array(values: list[Any]) -> np.ndarray:
    """A 1-d object array holding ``values`` as they are (NumPy would descend into lists)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


# --------------------------------------------------------------------------- applying notes


def _note_dtype(text: Any) -> np.dtype:
    # A short note must not make the reader allocate much.
    return checked_dtype(
        text, kinds=_NOTE_KINDS, what="type-note dtype", max_length=12, max_itemsize=_MAX_ITEMSIZE
    )


def _as_items(value: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return list(value)
    raise WireError(f"a type note describes a sequence, got {type(value).__name__}")


def _apply_items(value: Any, notes: Any) -> list[Any]:
    items = _as_items(value)
    if notes is None:
        return list(items)
    if not isinstance(notes, list) or len(notes) != len(items):
        raise WireError("a type note's items do not match the value's")
    return [apply_types(item, note) for item, note in zip(items, notes, strict=True)]


def _flatten(nested: Any, shape: list[int]) -> list[Any]:
    """The elements of ``nested`` (lists ``len(shape)`` deep) in C order, checking each
    level's length against ``shape`` before anything is allocated for them."""
    if not shape:
        return [nested]
    items = _as_items(nested)
    if len(items) != shape[0]:
        raise WireError("an object array's elements do not match its shape")
    if len(shape) == 1:
        return list(items)
    flat: list[Any] = []
    for item in items:
        flat.extend(_flatten(item, shape[1:]))
    return flat


def _apply_array(value: Any, note: dict[str, Any]) -> np.ndarray:
    dtype = _note_dtype(note["array"])
    shape = note.get("shape")
    if shape is not None and not (
        isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
    ):
        raise WireError(f"a type note's shape must list non-negative integers, got {shape!r}")
    if dtype.hasobject:
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            array = value
        elif shape is None:
            array = object_array(list(_as_items(value)))
        else:
            array = object_array(_flatten(value, shape)).reshape(shape)
        items = note.get("items")
        if items is not None:
            if not isinstance(items, list) or len(items) != array.size:
                raise WireError("a type note's items do not match the object array")
            flat = array.reshape(-1)  # a view: the array is contiguous
            for i, item_note in enumerate(items):
                if item_note is not None:
                    flat[i] = apply_types(flat[i], item_note)
        return array
    if isinstance(value, np.ndarray):
        array = value if value.dtype == dtype else value.astype(dtype)
    else:
        array = np.array(value, dtype=dtype)
    if shape is not None:
        array = array.reshape(shape)
    return array


def apply_types(value: Any, note: Any) -> Any:
    """``value`` (as the default reading gives it) turned into what ``note`` describes.

    Dicts are changed in place; other containers are rebuilt. Raises :class:`WireError`
    for a malformed note or one that does not fit ``value``.
    """
    if note is None:
        return value
    try:
        if type(note) is str:
            python_type = _PYTHON_SCALARS.get(note)
            if python_type is not None:
                return python_type(value)
            return _note_dtype(note).type(value)
        if type(note) is not dict or len(note) == 0:
            raise WireError(f"malformed type note {_brief(note)}")
        if "dict" in note:
            entries = note["dict"]
            if not isinstance(entries, dict) or not isinstance(value, dict):
                raise WireError("a dict type note needs a map and a map value")
            for key, entry in entries.items():
                if key in value:
                    value[key] = apply_types(value[key], entry)
            return value
        if "array" in note:
            return _apply_array(value, note)
        if "tuple" in note:
            return tuple(_apply_items(value, note["tuple"]))
        if "list" in note:
            return _apply_items(value, note["list"])
        raise WireError(f"malformed type note {_brief(note)}")
    except WireError:
        raise
    except RecursionError:
        raise WireError("a type note is nested too deeply") from None
    except (TypeError, ValueError, OverflowError, KeyError, IndexError) as exc:
        raise WireError(f"cannot apply the type note {_brief(note)}: {exc}") from None


def _brief(note: Any) -> str:
    text = repr(note)
    return text if len(text) <= 80 else text[:77] + "..."
