"""Showing the package's log messages on a command line.

The CLI commands print server events (envs made, env errors) and fleet events (a host
down, back) through :mod:`logging`. The handler here writes to whatever ``sys.stderr``
is when a record comes, so a command run inside a test runner or under a live progress
display, which swap ``sys.stderr``, never writes to a stream that has since been closed.
Records still propagate, so an application's own logging setup sees them too.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["StderrHandler", "show_logs"]


class StderrHandler(logging.StreamHandler):
    """A ``StreamHandler`` bound to the current ``sys.stderr`` rather than the one at
    construction time."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_logs(name: str, level: int | str, fmt: str, datefmt: str | None = None) -> None:
    """Print records of logger ``name`` at ``level`` and above on stderr (once: calling
    it again only changes the level)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter(fmt, datefmt))
        logger.addHandler(handler)
    logger.setLevel(level)
