"""AgentGPT: remote Gymnasium environments and a GPT policy trainer."""

from __future__ import annotations

from typing import Any

from agentgpt._version import __version__

__all__ = ["GPTAPI", "AgentGPT", "EnvLauncher", "FleetOptions", "__version__"]


def __getattr__(name: str) -> Any:
    # `AgentGPT` pulls in torch; resolve it on first use so that importing the package (for
    # the env server or the clients) stays light.
    if name == "AgentGPT":
        from agentgpt.api import AgentGPT

        return AgentGPT
    if name == "GPTAPI":
        from agentgpt.api import GPTAPI

        return GPTAPI
    if name == "EnvLauncher":
        from agentgpt.cloud.launcher import EnvLauncher

        return EnvLauncher
    if name == "FleetOptions":
        from agentgpt.hosts.fleet import FleetOptions

        return FleetOptions
    raise AttributeError(f"module 'agentgpt' has no attribute {name!r}")
