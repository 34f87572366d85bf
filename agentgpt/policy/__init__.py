"""The GPT policy: a causal transformer over the last K observations.

Importing this package imports torch.
"""

from agentgpt.policy.model import GPTPolicy, PolicyOutput
from agentgpt.policy.spaces import ActionCodec, ObservationCodec

__all__ = ["ActionCodec", "GPTPolicy", "ObservationCodec", "PolicyOutput"]
