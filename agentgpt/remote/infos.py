"""Rebuild a vector env's info dict from its wire form, exactly as Gymnasium builds it locally.

Gymnasium's vector infos map each key to an array over sub-envs plus a boolean mask under
``_key``; nested dicts (same-step mode's ``final_info``) follow the same layout, and
``final_obs`` is an object array holding ``None`` or one sub-env's observation (exactly as
the sub-env returned it). On the wire, numeric arrays are typed arrays in MessagePack but
plain lists in JSON, object arrays are lists in both, and ``final_obs`` travels as
``final_observation``. The answer's type notes (``types["info"]``) give every array its
dtype and every value inside its Python or NumPy type; this module applies them, so a
remote vector env's infos are equal to a local one's, types and dtypes included. From a
server that sends no notes, it falls back to inferring dtypes from JSON lists.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from agentgpt.protocol.autoreset import GYMNASIUM_INFO_NAMES
from agentgpt.protocol.fields import FINAL_OBSERVATION, FINAL_OBSERVATION_MASK
from agentgpt.wire import WireError, apply_types, value_from_wire

__all__ = ["vector_info_from_wire"]

_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def vector_info_from_wire(
    info: dict[str, Any] | None,
    single_observation_space: gymnasium.Space,
    *,
    lists_are_objects: bool,
    types: Any = None,
) -> dict[str, Any]:
    """Gymnasium's vector info from the wire's.

    ``types`` is the answer's note for its info (``read_types(answer).get("info")``); with
    it every entry gets its exact type. Without it (a server that sends no notes, or an
    info without arrays), ``lists_are_objects`` decides: it is true for MessagePack, where
    every numeric array arrives typed and a list can only have been an object array; in
    JSON, lists of numbers or booleans become arrays of the dtype Gymnasium gives Python
    numbers (int64, float64, bool).
    """
    if not info:
        return {}
    notes = _entries(types)
    result: dict[str, Any] = {}
    for key, value in info.items():
        note = notes.get(key)
        if key == FINAL_OBSERVATION:
            value = _object_array(
                [None if v is None else value_from_wire(single_observation_space, v) for v in value]
            )
        elif key == FINAL_OBSERVATION_MASK:
            value = np.array(value, dtype=np.bool_)
        elif note is None:
            value = _info_value(value, lists_are_objects)
        result[GYMNASIUM_INFO_NAMES.get(key, key)] = apply_types(value, note)
    return result


def _entries(types: Any) -> dict[str, Any]:
    """The per-key notes of a vector info's dict note (``{}`` for none)."""
    if types is None:
        return {}
    entries = types.get("dict") if isinstance(types, dict) else None
    if not isinstance(entries, dict):
        raise WireError(f"a vector info's type note must be a dict note, got {types!r}")
    return entries


def _info_value(value: Any, lists_are_objects: bool) -> Any:
    if isinstance(value, dict):
        return {k: _info_value(v, lists_are_objects) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        # Decoded arrays may be read-only views of the answer's bytes; infos are the
        # caller's to modify, as locally.
        return value if value.flags.writeable else value.copy()
    if isinstance(value, list):
        return _object_array(value) if lists_are_objects else _json_list_to_array(value)
    return value


def _json_list_to_array(values: list[Any]) -> np.ndarray:
    try:
        array = np.array(values)
    except ValueError:  # ragged nesting: only an object array can hold it
        return _object_array(values)
    if array.dtype.kind in "biuf":
        return array
    if array.dtype.kind == "U" and _all_numeric(values):
        return np.array(values, dtype=np.float64)  # non-finite floats spelled as strings
    return _object_array(values)


def _all_numeric(values: Any) -> bool:
    """True when every leaf is a number or one of the protocol's non-finite float strings."""
    if isinstance(values, list):
        return all(_all_numeric(v) for v in values)
    if isinstance(values, str):
        return values in _NON_FINITE
    return isinstance(values, (int, float)) and not isinstance(values, bool)


def _object_array(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array
