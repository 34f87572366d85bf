"""The PPO trainer for GPT policies.

Submodules import torch; this package itself stays import-free so ``agentgpt.cli`` can
register the ``train`` command without it.
"""
