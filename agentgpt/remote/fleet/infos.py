"""Vector-style info dicts for fleet batches: built per agent, joined across hosts.

Gymnasium's vector infos map every key to an array over rows and a boolean mask under
``_key`` saying which rows carry it. A fleet batch joins the blocks of rows several remote
envs answered with, so their infos must be joined the same way: a key one block lacks is
masked out (and zero- or ``None``-filled) for that block's rows. Multi-agent envs answer
with one info dict per agent; :func:`agent_infos` lays those out exactly as Gymnasium's
own ``VectorEnv._add_info`` would, so an ``action_mask`` reaches the trainer in the same
place whichever kind of env reported it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["agent_infos", "merge_infos", "scatter_info"]


def agent_infos(infos: Sequence[dict[str, Any] | None], n: int) -> dict[str, Any]:
    """The vector-style info of ``n`` rows from one info dict (or ``None``) per row."""
    vector: dict[str, Any] = {}
    for row, info in enumerate(infos):
        if info:
            _add(vector, info, row, n)
    return vector


def _add(vector: dict[str, Any], info: dict[str, Any], row: int, n: int) -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            _add(vector.setdefault(key, {}), value, row, n)
        else:
            array = vector.get(key)
            if array is None:
                array = vector[key] = _column_for(value, n)
            try:
                array[row] = value
            except (ValueError, TypeError):  # a value unlike the key's earlier ones
                array = vector[key] = _as_objects(array)
                array[row] = value
        mask = vector.get(f"_{key}")
        if mask is None:
            mask = vector[f"_{key}"] = np.zeros(n, dtype=np.bool_)
        mask[row] = True


def _column_for(value: Any, n: int) -> np.ndarray:
    """An empty column for a key first seen with ``value`` (Gymnasium's rule)."""
    if type(value) in (int, float, bool) or isinstance(value, np.number):
        return np.zeros(n, dtype=type(value))
    if isinstance(value, np.ndarray):
        return np.zeros((n, *value.shape), dtype=value.dtype)
    return np.full(n, None, dtype=object)


def _as_objects(array: np.ndarray) -> np.ndarray:
    out = np.full(len(array), None, dtype=object)
    for i in range(len(array)):
        out[i] = array[i]
    return out


def merge_infos(parts: Sequence[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """One info for consecutive blocks of rows; ``parts`` are ``(info, rows)`` pairs."""
    if not any(info for info, _ in parts):
        return {}
    keys: dict[str, None] = {}
    for info, _ in parts:
        keys.update(dict.fromkeys(info))
    merged: dict[str, Any] = {}
    for key in keys:
        values = [info.get(key) for info, _ in parts]
        if any(isinstance(v, dict) for v in values):
            merged[key] = merge_infos(
                [
                    (v if isinstance(v, dict) else {}, rows)
                    for v, (_, rows) in zip(values, parts, strict=True)
                ]
            )
        else:
            merged[key] = _join_column(values, [rows for _, rows in parts])
    return merged


def _join_column(values: list[Any], sizes: list[int]) -> np.ndarray:
    template = next(np.asarray(v) for v in values if v is not None)
    blocks = []
    for value, rows in zip(values, sizes, strict=True):
        if value is None:
            blocks.append(_filler(template, rows))
        else:
            blocks.append(np.asarray(value))
    try:
        return np.concatenate(blocks)
    except ValueError:  # blocks of different shapes: only an object column holds them
        out = np.full(sum(sizes), None, dtype=object)
        start = 0
        for block in blocks:
            for i in range(len(block)):
                out[start + i] = block[i]
            start += len(block)
        return out


def _filler(template: np.ndarray, rows: int) -> np.ndarray:
    if template.dtype == object:
        return np.full(rows, None, dtype=object)
    return np.zeros((rows, *template.shape[1:]), dtype=template.dtype)


def scatter_info(info: dict[str, Any], index: np.ndarray, n: int) -> dict[str, Any]:
    """``info`` of the rows ``index`` placed into an info of ``n`` rows (others masked out)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = scatter_info(value, index, n)
            continue
        value = np.asarray(value)
        full = _filler(value, n)
        full[index] = value
        out[key] = full
    return out
