"""AgentGPT: remote Gymnasium environments and a GPT policy trainer."""

from __future__ import annotations

__version__ = "0.1.0"
