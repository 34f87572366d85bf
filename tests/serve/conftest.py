"""Fixtures of the inference-server tests: real trained runs and real servers on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentgpt.serve.server import PolicyServer
from agentgpt.service.testing import serve_in_thread


@pytest.fixture(scope="session")
def cartpole_run(tiny_run: Callable[..., Path]) -> Path:
    """A short real CartPole-v1 run (Discrete actions)."""
    return Path(tiny_run("CartPole-v1"))


@pytest.fixture(scope="session")
def hybrid_run(tiny_run: Callable[..., Path]) -> Path:
    """A short real run of the hybrid-action toy env (Dict of Box and Discrete actions)."""
    return Path(tiny_run("agentgpt/HybridTarget-v0"))


@pytest.fixture(scope="session")
def dict_obs_run(tiny_run: Callable[..., Path]) -> Path:
    """A short real run of the Dict-observation toy env."""
    return Path(tiny_run("agentgpt/DictObs-v0"))


@pytest.fixture
def policy_server() -> Iterator[Callable[..., tuple[str, PolicyServer]]]:
    """Factory: ``policy_server(run_dir, **PolicyServer kwargs)`` -> (base URL, server).

    Each call serves one real server in a background thread until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(run_dir: Path, **kwargs: Any) -> tuple[str, PolicyServer]:
            server = PolicyServer(run_dir, **kwargs)
            return stack.enter_context(serve_in_thread(server.app)), server

        yield start


class NeverRandom:
    """A random stream for an ``Actor`` that never mixes in a random action, so a test
    reads the policy's own action at any control value."""

    def random(self, size: int) -> np.ndarray:
        return np.zeros(size)
