"""The PPO trainer for GPT policies.

Submodules import torch; this package itself imports nothing heavy so ``agentgpt.cli``
can register the ``train`` command without it.
"""

import os

# Idle OpenMP threads sleep instead of spinning: torch's thread pool otherwise burns the
# CPU that env stepping or a second process needs, and slows down many-fold when two
# trainings share the cores. Only takes effect when torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
