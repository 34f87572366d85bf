"""Unity ML-Agents tests: the adapter, the env server and training, against a stand-in.

``mlagents-envs`` 0.28 needs protobuf 3.20, which the trainer's stack (onnx, TensorBoard)
cannot share, so these tests run in the env-host virtualenv that CI builds with
``agentgpt[unity]`` (see docs/unity.md). In an environment without ``mlagents_envs`` the
adapter and server tests are not collected; the training test runs in the main
environment (it needs torch) and reaches the Unity side through an env server started
with the Python named by ``AGENTGPT_UNITY_PYTHON``.

No Unity binary runs here: ``standin.py`` plays the Unity player (see its docstring), and
``standin_build`` writes an executable "build" that starts it, so ``UnityEnvironment``
launches it exactly as it launches a real player.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

STANDIN = Path(__file__).with_name("standin.py")
HAS_MLAGENTS = importlib.util.find_spec("mlagents_envs") is not None

# Without mlagents_envs only the training test (main environment) is collected.
collect_ignore = [] if HAS_MLAGENTS else ["test_unity_adapter.py", "test_unity_server.py"]


def write_standin_build(
    folder: Path,
    *,
    scene: str = "mixed",
    record: Path | None = None,
    die_after: int = 0,
    python: str | None = None,
    name: str = "StandIn",
) -> Path:
    """An executable ``<name>.x86_64`` that runs the stand-in player with ``python``."""
    args = [python or sys.executable, str(STANDIN), "--scene", scene]
    if record is not None:
        args += ["--record", str(record)]
    if die_after:
        args += ["--die-after", str(die_after)]
    build = folder / f"{name}.x86_64"
    build.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in args) + ' "$@"\n')
    build.chmod(build.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return build


@pytest.fixture
def standin_build(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``standin_build(scene=..., record=..., die_after=...)`` -> build path."""
    counter = iter(range(1000))

    def make(**kwargs) -> Path:
        folder = tmp_path / f"build{next(counter)}"
        folder.mkdir()
        return write_standin_build(folder, **kwargs)

    return make


@pytest.fixture
def base_port() -> int:
    """A base port for Unity instances of this test, away from ML-Agents' defaults, so
    tests do not meet each other's (or a developer's) instances."""
    return 15000 + (os.getpid() % 500) * 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # mlagents-envs 0.28's generated protobuf modules and version checks use APIs that
    # protobuf and Python deprecate; that is the package's business, not these tests'.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:mlagents_envs"))
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:google"))
