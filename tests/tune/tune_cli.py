"""Running ``agentgpt`` as a user does, in a fresh interpreter."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import agentgpt

REPO = Path(agentgpt.__file__).resolve().parents[1]


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``agentgpt ARGS`` in a fresh interpreter (the real command line)."""
    return subprocess.run(
        [sys.executable, "-m", "agentgpt", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env() -> dict[str, str]:
    path = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


@contextlib.contextmanager
def started(*args: str, cwd: Path) -> Iterator[subprocess.Popen]:
    """``agentgpt ARGS`` running in the background; killed if still running at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentgpt", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ValueError):  # already read by the test
            proc.communicate(timeout=30)
