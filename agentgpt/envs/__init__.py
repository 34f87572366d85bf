"""Environments shipped with AgentGPT, registered under the ``agentgpt/`` namespace.

Entry points are strings so registration imports nothing heavy: ``import agentgpt`` stays
fast, and an id's module is only imported when that env is made.
"""

from __future__ import annotations

import gymnasium

#: Gymnasium ids shipped with the package, mapped to their entry points.
GYMNASIUM_ENVS: dict[str, dict] = {
    "agentgpt/Remote-v0": {"entry_point": "agentgpt.remote.env:RemoteEnv"},
}


def register_envs() -> None:
    """Register every shipped id once; safe to call repeatedly."""
    for env_id, spec in GYMNASIUM_ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, **spec)
