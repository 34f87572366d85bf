"""Values of a space (observations, actions) between Gymnasium and the wire.

``value_from_wire`` is where untrusted input gets its type: it accepts what either encoding
decodes to (JSON lists and the non-finite strings, MessagePack arrays) and returns exactly
what Gymnasium itself would produce (arrays of the space's dtype and shape, ``np.int64``
for ``Discrete``, tuples for ``Tuple`` and ``Sequence``...). A ``Dict`` value keeps the key
order of the map it comes from (the env's own order, not the space's sorted one). It checks structure, dtype and
shape, not bounds: whether a value lies *in* the space is ``space.contains``'s question,
which the server asks to answer with its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from agentgpt.wire.errors import UnsupportedSpaceError, WireError
from agentgpt.wire.numeric import coerce_array, coerce_integer

__all__ = ["value_from_wire", "value_to_wire"]

_INT64 = np.dtype(np.int64)
_SEQUENCE_TYPES = (list, tuple)


class _Located(WireError):
    """A mismatch inside a composite value, with the path to where it happened."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"at {where}: {reason}")
        self.reason = reason
        self.where = where


def _brief(space: gymnasium.Space) -> str:
    text = repr(space)
    return text if len(text) <= 120 else text[:117] + "..."


def _locate(exc: WireError, step: str, child: gymnasium.Space) -> _Located:
    """``exc`` raised for ``child``, re-raised one level up with ``step`` on its path."""
    if isinstance(exc, _Located):
        return _Located(exc.reason, step + exc.where)
    return _Located(f"{exc} ({_brief(child)})", step)


def _find(table: dict[type, Any], space: Any) -> Any:
    entry = table.get(type(space))
    if entry is not None:
        return entry
    if not isinstance(space, gymnasium.Space):
        raise UnsupportedSpaceError(f"expected a gymnasium.Space, got {type(space).__name__}")
    for cls in type(space).__mro__:
        entry = table.get(cls)
        if entry is not None:
            table[type(space)] = entry
            return entry
    raise UnsupportedSpaceError(f"{type(space).__name__} spaces cannot be sent over the wire")


def _describe(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_sequence(obj: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if isinstance(obj, _SEQUENCE_TYPES):
        return obj
    if isinstance(obj, np.ndarray) and obj.ndim >= 1:
        return list(obj)
    raise WireError(f"expected a list ({what}), got {type(obj).__name__} {_describe(obj)}")


def _as_mapping(obj: Any, space: spaces.Dict) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise WireError(f"expected a map (Dict), got {type(obj).__name__} {_describe(obj)}")
    missing = [key for key in space.spaces if key not in obj]
    if missing:
        raise WireError(f"missing key(s) {missing} for {_brief(space)}")
    if len(obj) != len(space.spaces):
        extra = [key for key in obj if key not in space.spaces]
        raise WireError(f"unexpected key(s) {extra} for {_brief(space)}")
    return obj


def _leading_length(space: gymnasium.Space, obj: Any) -> int | None:
    """The batch size of a stacked value of ``space``, ``None`` if it carries none.

    Mirrors ``batch_space``: array spaces gain a leading axis, Dict and Tuple batch each
    member, and every other space becomes a tuple of ``n`` values.
    """
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        if isinstance(obj, np.ndarray) and obj.ndim >= 1:
            return obj.shape[0]
        if isinstance(obj, _SEQUENCE_TYPES):
            return len(obj)
        raise WireError(f"expected a stacked array, got {type(obj).__name__} {_describe(obj)}")
    if isinstance(space, spaces.Dict):
        mapping = _as_mapping(obj, space)
        for key, sub in space.spaces.items():
            length = _leading_length(sub, mapping[key])
            if length is not None:
                return length
        return None
    if isinstance(space, spaces.Tuple):
        items = _as_sequence(obj, "Tuple")
        for sub, item in zip(space.spaces, items, strict=False):
            length = _leading_length(sub, item)
            if length is not None:
                return length
        return None
    return len(_as_sequence(obj, "stacked values"))


def _stacked_space(space: spaces.Sequence, obj: Any) -> gymnasium.Space:
    length = _leading_length(space.feature_space, obj)
    return batch_space(space.feature_space, length or 0)


# --------------------------------------------------------------------------- from the wire


def _box_from(space: spaces.Box, obj: Any) -> np.ndarray:
    # Always an array, 0-d included: Gymnasium samples NumPy scalars for some 0-d integer
    # spaces, but only arrays pass their ``contains``.
    return coerce_array(obj, space.dtype, space.shape)


def _multi_binary_from(space: spaces.MultiBinary, obj: Any) -> np.ndarray:
    return coerce_array(obj, space.dtype, space.shape, allow_bool=True)


def _discrete_from(space: spaces.Discrete, obj: Any) -> Any:
    return coerce_integer(obj, space.dtype)


def _text_from(space: spaces.Text, obj: Any) -> str:
    if not isinstance(obj, str):
        raise WireError(f"expected a string, got {type(obj).__name__} {_describe(obj)}")
    return str(obj)


def _dict_from(space: spaces.Dict, obj: Any) -> dict[str, Any]:
    # In the map's own order, which is the order the env (or the caller) wrote its keys in.
    mapping = _as_mapping(obj, space)
    subspaces = space.spaces
    out = {}
    for key, item in mapping.items():
        sub = subspaces[key]
        try:
            out[key] = _from(sub, item)
        except WireError as exc:
            raise _locate(exc, f"[{key!r}]", sub) from None
    return out


def _items_from(subspaces: Any, items: Any) -> tuple[Any, ...]:
    out = []
    for index, (sub, item) in enumerate(zip(subspaces, items, strict=True)):
        try:
            out.append(_from(sub, item))
        except WireError as exc:
            raise _locate(exc, f"[{index}]", sub) from None
    return tuple(out)


def _tuple_from(space: spaces.Tuple, obj: Any) -> tuple[Any, ...]:
    items = _as_sequence(obj, "Tuple")
    if len(items) != len(space.spaces):
        raise WireError(
            f"expected {len(space.spaces)} values for {_brief(space)}, got {len(items)}"
        )
    return _items_from(space.spaces, items)


def _sequence_from(space: spaces.Sequence, obj: Any) -> Any:
    if space.stack:
        return _from(_stacked_space(space, obj), obj)
    items = _as_sequence(obj, "Sequence")
    return _items_from([space.feature_space] * len(items), items)


def _one_of_index(space: spaces.OneOf, obj: Any) -> tuple[int, Any]:
    pair = _as_sequence(obj, "OneOf [index, value]")
    if len(pair) != 2:
        raise WireError(f"expected [index, value] for {_brief(space)}, got {len(pair)} items")
    index = int(coerce_integer(pair[0], _INT64))
    if not 0 <= index < len(space.spaces):
        raise WireError(f"index {index} is out of range for {_brief(space)}")
    return index, pair[1]


def _one_of_from(space: spaces.OneOf, obj: Any) -> tuple[Any, Any]:
    index, item = _one_of_index(space, obj)
    sub = space.spaces[index]
    try:
        return np.int64(index), _from(sub, item)
    except WireError as exc:
        raise _locate(exc, "[1]", sub) from None


_FROM: dict[type, Callable[[Any, Any], Any]] = {
    spaces.Box: _box_from,
    spaces.Discrete: _discrete_from,
    spaces.MultiDiscrete: _box_from,
    spaces.MultiBinary: _multi_binary_from,
    spaces.Text: _text_from,
    spaces.Dict: _dict_from,
    spaces.Tuple: _tuple_from,
    spaces.Sequence: _sequence_from,
    spaces.OneOf: _one_of_from,
}


def _from(space: gymnasium.Space, obj: Any) -> Any:
    return _find(_FROM, space)(space, obj)


def value_from_wire(space: gymnasium.Space, obj: Any) -> Any:
    """The exact Gymnasium value of ``space`` that the decoded wire value ``obj`` encodes.

    Raises :class:`WireError` when ``obj`` has the wrong structure, shape or type, or holds
    a number the space's dtype cannot represent (``1.5`` for an integer space, ``300`` for
    ``uint8``). Bounds are not checked.
    """
    return _from(space, obj)


# --------------------------------------------------------------------------- to the wire


def _discrete_to(space: spaces.Discrete, value: Any) -> int:
    return int(coerce_integer(value, space.dtype))


def _dict_to(space: spaces.Dict, value: Any) -> dict[str, Any]:
    mapping = _as_mapping(value, space)
    subspaces = space.spaces
    out = {}
    for key, item in mapping.items():
        sub = subspaces[key]
        try:
            out[key] = _to(sub, item)
        except WireError as exc:
            raise _locate(exc, f"[{key!r}]", sub) from None
    return out


def _items_to(subspaces: Any, items: Any) -> list[Any]:
    out = []
    for index, (sub, item) in enumerate(zip(subspaces, items, strict=True)):
        try:
            out.append(_to(sub, item))
        except WireError as exc:
            raise _locate(exc, f"[{index}]", sub) from None
    return out


def _tuple_to(space: spaces.Tuple, value: Any) -> list[Any]:
    items = _as_sequence(value, "Tuple")
    if len(items) != len(space.spaces):
        raise WireError(
            f"expected {len(space.spaces)} values for {_brief(space)}, got {len(items)}"
        )
    return _items_to(space.spaces, items)


def _sequence_to(space: spaces.Sequence, value: Any) -> Any:
    if space.stack:
        return _to(_stacked_space(space, value), value)
    items = _as_sequence(value, "Sequence")
    return _items_to([space.feature_space] * len(items), items)


def _one_of_to(space: spaces.OneOf, value: Any) -> list[Any]:
    index, item = _one_of_index(space, value)
    sub = space.spaces[index]
    try:
        return [index, _to(sub, item)]
    except WireError as exc:
        raise _locate(exc, "[1]", sub) from None


_TO: dict[type, Callable[[Any, Any], Any]] = {
    spaces.Box: _box_from,
    spaces.Discrete: _discrete_to,
    spaces.MultiDiscrete: _box_from,
    spaces.MultiBinary: _multi_binary_from,
    spaces.Text: _text_from,
    spaces.Dict: _dict_to,
    spaces.Tuple: _tuple_to,
    spaces.Sequence: _sequence_to,
    spaces.OneOf: _one_of_to,
}


def _to(space: gymnasium.Space, value: Any) -> Any:
    return _find(_TO, space)(space, value)


def value_to_wire(space: gymnasium.Space, value: Any) -> Any:
    """``value`` of ``space`` in wire form, ready for :func:`agentgpt.wire.encode`.

    Arrays are brought to the space's dtype (never with a lossy cast: a value that does
    not fit raises :class:`WireError`), tuples become lists and integers plain ints, so
    that both encodings write the documented form.
    """
    return _to(space, value)
