"""Check that a remote env behaves like the local one: value equality as the wire defines it.

``RemoteEnv`` and ``RemoteVectorEnv`` return the env's own types (the server's type notes
carry them), so Gymnasium's exact ``data_equivalence`` holds against the local env. A
``RemoteParallelEnv`` (and a server that sends no notes) returns every value in its space's
canonical type (``np.int64`` for ``Discrete``, arrays of the space's dtype), while a local
env may return a Python ``int`` where its space says ``np.int64``. :func:`same_values` is
``data_equivalence`` with that one allowance, so tests (ours, and users' checks of their own
envs through a server) can assert "equal to local" without tripping on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["same_values"]


def same_values(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are equal containers of equal values.

    Dicts (of any dict type) need equal keys, lists and tuples equal lengths, arrays equal shape, dtype and
    contents (NaN equals NaN; object arrays element by element). A Python scalar equals a
    NumPy scalar of the same kind (bool, integer, float) and value; anything else must have
    the same type.
    """
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_values(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same_values(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == object:
            return all(same_values(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if type(a) is not type(b) and (_scalar_kind(a) is None or _scalar_kind(a) != _scalar_kind(b)):
        return False
    if isinstance(a, (float, np.floating)):
        return bool(a == b or (np.isnan(a) and np.isnan(b)))
    return bool(a == b)


def _scalar_kind(x: Any) -> str | None:
    if isinstance(x, (bool, np.bool_)):  # before int: bool is an int subclass
        return "bool"
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, (float, np.floating)):
        return "float"
    return None
