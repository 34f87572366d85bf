"""How the env server is handed to uvicorn: the one place for its uvicorn settings.

Both ways of serving (``EnvServer.run`` and ``run_server_in_thread``) build their
``uvicorn.Config`` here, so production and tests run with the same settings. Only public
``uvicorn.Config`` options are used, so any uvicorn release users install keeps working.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["uvicorn_config"]


def _http_implementation() -> str:
    """httptools (the faster HTTP parser) when installed, else uvicorn's pure-Python h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def uvicorn_config(app: Any, log_level: str = "info", **overrides: Any) -> Any:
    """The ``uvicorn.Config`` the env server runs with; ``overrides`` are further options."""
    import uvicorn

    settings: dict[str, Any] = {
        "log_level": log_level,
        # An access-log line per request would cost more than a whole env step.
        "access_log": False,
        # The server never uses client addresses, so proxy headers need no rewriting.
        "proxy_headers": False,
        "http": _http_implementation(),
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
