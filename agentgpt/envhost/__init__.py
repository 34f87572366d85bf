"""The environment server: hosts Gymnasium and PettingZoo envs for remote clients over HTTP.

``EnvServer`` is the Python entry point; ``agentgpt env-server`` the command-line one. The
HTTP API is specified in ``docs/protocol.md``. Attributes are imported on first use so that
importing the package (the CLI does, to register its command) loads no web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentgpt.envhost.server import EnvServer
    from agentgpt.envhost.testing import run_server_in_thread

__all__ = ["EnvServer", "run_server_in_thread"]


def __getattr__(name: str) -> Any:
    if name == "EnvServer":
        from agentgpt.envhost.server import EnvServer

        return EnvServer
    if name == "run_server_in_thread":
        from agentgpt.envhost.testing import run_server_in_thread

        return run_server_in_thread
    raise AttributeError(f"module 'agentgpt.envhost' has no attribute {name!r}")
