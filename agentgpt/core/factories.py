"""Loading an env factory named as ``"package.module:attr"``.

Env servers (``--register NAME=FACTORY``) and evaluation of multi-agent runs both turn an
operator's string into a callable. Only ever call this with strings the operator wrote:
it imports the named module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["Factory", "load_factory"]

Factory = Callable[..., Any]


def load_factory(spec: str) -> Factory:
    """Import ``"package.module:attr"`` (``attr`` may be dotted) and return the callable.

    Only ever called with operator-supplied strings.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"factory {spec!r} must look like 'package.module:factory'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} for factory {spec!r}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r}") from exc
    if not callable(obj):
        raise ValueError(f"factory {spec!r} is not callable")
    return obj
