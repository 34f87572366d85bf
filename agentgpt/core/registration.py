"""Registering Gymnasium ids that installed packages declare, without import side effects.

A package declares the ids of its namespace under the ``gymnasium.envs`` entry-point
group, named after the namespace (AgentGPT: ``agentgpt = "agentgpt.envs:register_envs"``).
Gymnasium 0.26 loaded that group when it was imported; Gymnasium 1.x no longer does. So
the places that make envs by id (the trainer, evaluation, the env server) call
:func:`register_namespace` for the id's namespace first, and ``import agentgpt`` registers
nothing.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

__all__ = ["ENTRY_POINT_GROUP", "namespace_of", "register_namespace"]

ENTRY_POINT_GROUP = "gymnasium.envs"

log = logging.getLogger("agentgpt")

_loaded: set[str] = set()


def namespace_of(env_id: str) -> str | None:
    """The namespace of a Gymnasium id (``"agentgpt/MemoryCue-v0"`` -> ``"agentgpt"``)."""
    name = env_id.rpartition(":")[2]
    return name.split("/", 1)[0] if "/" in name else None


def register_namespace(env_id_or_namespace: str) -> bool:
    """Run the ``gymnasium.envs`` entry point named after the namespace of an id (or a
    namespace itself), once per process. Returns whether one was found.

    Only the entry point of that one namespace is loaded: an id never causes another
    package's registration code to run.
    """
    namespace = namespace_of(env_id_or_namespace) or env_id_or_namespace
    if namespace in _loaded:
        return True
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == namespace]
    for ep in found:
        register = ep.load()
        if callable(register):
            register()
    if found:
        _loaded.add(namespace)
    return bool(found)
