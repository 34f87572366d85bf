"""Which envs a server can make, and how.

A request names an env; it never names code. A name is served when it is an id in
Gymnasium's registry (whose entry points the operator controls by what they install and
import) or a name the operator registered with a factory. Gymnasium's ``"module:EnvId"``
form would import ``module`` on the server, so such names are refused unless the operator
registered that exact string. An operator may also register the path of a Unity player
build (``.x86_64``, ``.exe``, ``.app``), served through the Unity adapter.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import gymnasium

from agentgpt.core.factories import Factory, load_factory
from agentgpt.core.registration import register_namespace
from agentgpt.envhost import errors
from agentgpt.envhost.unity.launch import BUILD_SUFFIXES, UnityLauncher

__all__ = ["BLOCKED_GYMNASIUM_IDS", "EnvSource", "EnvRegistry", "load_factory"]

#: Gymnasium ids that are never served unless the operator registers them by name:
#: ``agentgpt/Remote-v0`` would make the server open connections to a URL of the client's
#: choosing.
#: The namespace of the ids this package ships (its ``gymnasium.envs`` entry point).
SHIPPED_NAMESPACE = "agentgpt"

BLOCKED_GYMNASIUM_IDS = frozenset({"agentgpt/Remote-v0"})


@dataclass(frozen=True)
class EnvSource:
    """A servable env: an operator factory, or (``factory is None``) a Gymnasium id."""

    name: str
    factory: Factory | None = None

    @property
    def is_registered(self) -> bool:
        return self.factory is not None


class EnvRegistry:
    """Resolves env names from requests; suggests near matches for unknown ones."""

    def __init__(self, register: Mapping[str, Factory | str] | None = None) -> None:
        # The shipped agentgpt/ ids are served by default; no request can load a namespace.
        register_namespace(SHIPPED_NAMESPACE)
        self._factories: dict[str, Factory] = {}
        for name, factory in (register or {}).items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"registered env names must be non-empty strings, got {name!r}")
            if isinstance(factory, str) and factory.lower().endswith(BUILD_SUFFIXES):
                # A Unity player build: each /make starts one instance (docs/unity.md).
                factory = UnityLauncher(factory)
            elif isinstance(factory, str):
                factory = load_factory(factory)
            if not callable(factory):
                raise ValueError(f"factory registered as {name!r} is not callable")
            self._factories[name] = factory

    @property
    def registered_names(self) -> list[str]:
        return list(self._factories)

    def names(self) -> list[str]:
        """Every servable name (operator names first)."""
        gym_ids = [
            env_id
            for env_id in gymnasium.registry
            if env_id not in BLOCKED_GYMNASIUM_IDS and ":" not in env_id
        ]
        return list(self._factories) + [n for n in gym_ids if n not in self._factories]

    def lookup(self, name: str) -> EnvSource:
        """The source for ``name``, or a 404 ``unknown_env`` error with suggestions."""
        factory = self._factories.get(name)
        if factory is not None:
            return EnvSource(name, factory)
        if ":" not in name and name not in BLOCKED_GYMNASIUM_IDS and name in gymnasium.registry:
            return EnvSource(name)
        raise errors.unknown_env(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        message = f"unknown env {name!r}"
        if ":" in name:
            message += (
                " (names of the form 'module:EnvId' are not imported on request; the server's"
                " operator can register the env with --register)"
            )
        elif name in BLOCKED_GYMNASIUM_IDS:
            message += " (this id is not served remotely)"
        suggestions = self.suggest(name)
        if suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        return message

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` servable names close to ``name`` (case-insensitive)."""
        candidates = self.names()
        by_lower: dict[str, str] = {}
        for candidate in candidates:
            by_lower.setdefault(candidate.lower(), candidate)
        query = name.split(":", 1)[-1].lower()
        matches = difflib.get_close_matches(query, list(by_lower), n=limit, cutoff=0.6)
        if not matches:
            # "cartpole" should still find "CartPole-v1": compare without version suffixes.
            prefix = [low for low in by_lower if low.split("-v")[0] == query.split("-v")[0]]
            matches = prefix[:limit]
        return [by_lower[m] for m in matches]
