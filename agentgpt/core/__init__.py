"""The torch-free kernel every other package builds on.

It holds what env sources and their consumers share: the asynchronous vector-env
protocol (:mod:`~agentgpt.core.async_env`), the batch one ``recv`` returns
(:mod:`~agentgpt.core.step_batch`), the adapter that puts a Gymnasium vector env behind
that protocol (:mod:`~agentgpt.core.local`), the description of an env a run trains on
(:mod:`~agentgpt.core.env_spec`), the "envs unavailable" error, Gymnasium-layout batching
of space values, factory loading and command-line logging. It imports no web stack and no
torch.
"""

from agentgpt.core.async_env import AsyncVectorEnv, is_async_vector_env
from agentgpt.core.env_spec import EnvSpec
from agentgpt.core.errors import EnvsUnavailable
from agentgpt.core.local import LocalVectorEnv
from agentgpt.core.step_batch import StepBatch

__all__ = [
    "AsyncVectorEnv",
    "EnvSpec",
    "EnvsUnavailable",
    "LocalVectorEnv",
    "StepBatch",
    "is_async_vector_env",
]
