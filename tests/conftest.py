"""Shared pytest fixtures. Each section belongs to one part of the product."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# ----------------------------------------------------------------------------------------
# Env servers (agentgpt.envhost): real uvicorn servers on free loopback ports.
# ----------------------------------------------------------------------------------------


@pytest.fixture
def env_server() -> Iterator[Callable[..., str]]:
    """Factory: ``env_server(**EnvServer kwargs)`` or ``env_server(server)`` -> base URL.

    Each call starts one real server in a background thread; all are stopped (and their
    envs closed) when the test ends.
    """
    from agentgpt.envhost import EnvServer, run_server_in_thread

    with contextlib.ExitStack() as stack:

        def start(server: Any = None, **kwargs: Any) -> str:
            if server is None:
                server = EnvServer(**kwargs)
            return stack.enter_context(run_server_in_thread(server))

        yield start
