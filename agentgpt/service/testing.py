"""Real services in a thread, for tests and notebooks (:func:`serve_in_thread`, which
lives in :mod:`agentgpt.service.threaded` because production code uses it too)."""

from agentgpt.service.threaded import serve_in_thread

__all__ = ["serve_in_thread"]
