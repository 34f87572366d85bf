"""Adapters that let other reinforcement-learning libraries train on AgentGPT's envs.

Each submodule serves one library and imports it, so importing this package imports
none of them: ``agentgpt.integrations.sb3`` needs Stable-Baselines3
(``pip install "agentgpt[sb3]"``). See ``docs/integrations.md``.
"""
