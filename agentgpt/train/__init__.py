"""The PPO trainer for GPT policies.

Submodules import torch; this package itself imports nothing heavy so ``agentgpt.cli``
can register the ``train`` command without it.
"""
