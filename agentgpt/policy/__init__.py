"""The GPT policy: a causal transformer over the last K observations.

Importing this package imports torch.
"""

import os

# See agentgpt/train/__init__.py: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from agentgpt.policy.model import GPTPolicy, PolicyOutput  # noqa: E402
from agentgpt.policy.spaces import ActionCodec, ObservationCodec  # noqa: E402

__all__ = ["ActionCodec", "GPTPolicy", "ObservationCodec", "PolicyOutput"]
