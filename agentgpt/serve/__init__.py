"""Serving trained agents: the inference server and its clients (``docs/serving.md``).

- :mod:`~agentgpt.serve.engine`: per-agent contexts over one trained policy, acting for
  many agents and sessions in batched forward passes (imports torch).
- :mod:`~agentgpt.serve.server`: ``PolicyServer``, the HTTP routes on the service kit,
  with dynamic batching of concurrent calls and checkpoint reloads (``agentgpt serve``).
- :mod:`~agentgpt.serve.requests`: reading and checking requests, errors naming the
  agent and the field.
- :mod:`~agentgpt.serve.client`: ``GPTAPI``, the Python client (no torch), and
  ``GPTAPI.local`` for the same API in-process.
- :mod:`~agentgpt.serve.evaluate`: a run's env played with a served policy
  (``agentgpt eval --policy-url``).

Importing this package imports nothing; ``GPTAPI`` is also ``agentgpt.GPTAPI``.
"""
