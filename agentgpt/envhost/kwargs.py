"""Which env kwargs a request may send: the rules that keep ``kwargs`` from naming code.

A request's ``kwargs`` go to the env's constructor. Most are plain settings
(``max_episode_steps``, ``map_name``, ``continuous``), but some constructors take the name
of another env, a module or a file and load it: Shimmy's ``GymV26Environment-v0`` makes
whatever ``kwargs.env_id`` names, and Gymnasium's ``"module:EnvId"`` form imports
``module``. The server therefore refuses, with ``422 invalid_argument``, every kwarg that:

* has a key that names code, another env or a resource: one of the words in
  :data:`NAMING_WORDS` (the key split on ``_`` and at lower-to-upper case changes, so
  ``env_id``, ``entry_point``, ``xml_file`` and ``moduleName`` all match), or one of the
  keys in :data:`NAMING_KEYS`;
* holds, anywhere in its value (inside lists and maps too, map keys included), a string
  that is wholly of the form ``module:attribute`` (:data:`CODE_REFERENCE`: a dotted name,
  a colon and a name, spaces around the colon allowed), the form Gymnasium's env ids and
  Python's entry points read as "import ``module``".

An operator who serves an env that needs such a kwarg names it with ``--allow-kwargs KEY``
(``EnvServer(allow_kwargs=[...])``); that kwarg is then passed as sent. ``*`` allows every
kwarg. The rules are a net for the known ways a request could make the server load code;
what the server can load at all is what its operator installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agentgpt.envhost import errors
from agentgpt.protocol.fields import KWARGS
from agentgpt.protocol.requests import short_repr

__all__ = [
    "ALLOW_ALL",
    "CODE_REFERENCE",
    "NAMING_KEYS",
    "NAMING_WORDS",
    "KwargsRules",
    "code_reference_in",
    "key_words",
    "names_code",
]

#: Words that make a kwarg's key one that names code, another env or a resource.
NAMING_WORDS = frozenset(
    {
        # code
        "module",
        "modules",
        "entry",
        "import",
        "package",
        "class",
        "cls",
        "factory",
        "plugin",
        "wrapper",
        "wrappers",
        "callable",
        "callback",
        "func",
        "function",
        "fn",
        # another env
        "id",
        "ids",
        # files and addresses
        "file",
        "files",
        "path",
        "paths",
        "dir",
        "url",
        "uri",
    }
)
#: Whole keys that name another env.
NAMING_KEYS = frozenset({"env", "env_name", "spec"})
#: A string that reads as ``module:attribute`` (a dotted module path, a colon, a name).
CODE_REFERENCE = r"^\s*[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\s*:\s*[A-Za-z_][\w./-]*\s*$"
#: The ``allow_kwargs`` entry that allows every kwarg.
ALLOW_ALL = "*"

_CODE_REFERENCE_RE = re.compile(CODE_REFERENCE)
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])|([A-Z])([A-Z][a-z])")


def key_words(key: str) -> list[str]:
    """The words of a kwarg's key: split on non-alphanumerics and at lower-to-upper case
    changes, lowercased (``"envId"`` and ``"env_id"`` give ``["env", "id"]``)."""
    split = _CAMEL_RE.sub(lambda m: "_".join(g for g in m.groups() if g), key)
    return re.findall(r"[a-z0-9]+", split.lower())


def names_code(key: str) -> bool:
    """Whether a kwarg's key names code, another env or a resource."""
    return key.lower() in NAMING_KEYS or any(word in NAMING_WORDS for word in key_words(key))


def code_reference_in(value: Any) -> str | None:
    """The first string in ``value`` (walked through lists, tuples and maps, their keys
    included) that reads as ``module:attribute``, or ``None``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _CODE_REFERENCE_RE.match(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


class KwargsRules:
    """The server's kwargs rules: :meth:`check` refuses a request's kwargs that name code,
    other envs or resources, except those the operator allowed by key."""

    def __init__(self, allow: Iterable[str] | None = None) -> None:
        allowed = set()
        for key in allow or ():
            if not isinstance(key, str) or not key:
                raise ValueError(f"allowed kwargs must be non-empty strings, got {key!r}")
            allowed.add(key)
        self.allow_all = ALLOW_ALL in allowed
        self.allowed = frozenset(allowed - {ALLOW_ALL})

    def check(self, kwargs: dict[str, Any]) -> None:
        """Raise ``422 invalid_argument`` for the first kwarg the rules refuse."""
        if self.allow_all:
            return
        for key, value in kwargs.items():
            if key in self.allowed:
                continue
            if names_code(key):
                raise errors.invalid_argument(
                    f"{KWARGS}.{key} is refused: keys that name code, another env, a file or"
                    " an address are not passed to envs unless the server's operator allows"
                    f" them (--allow-kwargs {key})"
                )
            reference = code_reference_in(value)
            if reference is not None:
                raise errors.invalid_argument(
                    f"{KWARGS}.{key} is refused: it holds {short_repr(reference)}, which reads"
                    " as 'module:attribute' (code to import); such values are not passed to"
                    f" envs unless the server's operator allows the kwarg (--allow-kwargs {key})"
                )
