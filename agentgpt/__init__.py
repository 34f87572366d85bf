"""AgentGPT: remote Gymnasium environments and a GPT policy trainer."""

from __future__ import annotations

from agentgpt.envs import register_envs

__version__ = "0.1.0"

register_envs()
