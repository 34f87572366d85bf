"""The README's env-server paths work as written.

The tests read the README itself (the env module, the server and trainer command lines,
the client snippet) and run them against a real ``agentgpt env-server`` subprocess, so
the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

import agentgpt
from agentgpt.remote import AuthError, RemoteEnv

REPO = Path(agentgpt.__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
OWN_ENV_SECTION = "Serve your own env and train on it from another machine"


def _section(title: str) -> str:
    """The README text under ``## title``, up to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _command_line(block: str, program: str) -> list[str]:
    """The words of the shell command in ``block`` that runs ``agentgpt PROGRAM``."""
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if "agentgpt" in words and words[words.index("agentgpt") + 1] == program:
            return words
    raise AssertionError(f"no 'agentgpt {program}' command in {block!r}")


def _env_module() -> str:
    """The env module the README has the reader write."""
    blocks = _blocks(_section(OWN_ENV_SECTION), "python")
    (module,) = [block for block in blocks if block.startswith("# my_envs.py")]
    return module


def _server_command() -> list[str]:
    """The README's command that serves that module."""
    blocks = _blocks(_section(OWN_ENV_SECTION), "bash")
    return _command_line(next(block for block in blocks if "env-server" in block), "env-server")


def _option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def _pythonpath(*dirs: Path) -> str:
    """``dirs``, then this checkout (so the code under test is what runs)."""
    entries = [*map(str, dirs), str(REPO), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(entry for entry in entries if entry)


@dataclass
class Served:
    url: str
    key: str
    env_name: str
    process: subprocess.Popen


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The README's own env, served by the README's command (on a free port), with the
    key from the environment and the module's directory on PYTHONPATH only."""
    env_dir = tmp_path_factory.mktemp("envs")
    (env_dir / "my_envs.py").write_text(_env_module())
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # started away from the module

    words = _server_command()
    assert any(word.startswith("PYTHONPATH=") for word in words)
    assert _option(words, "--host") == "0.0.0.0"
    args = words[words.index("agentgpt") + 1 :]
    args[args.index("--port") + 1] = "0"
    name = _option(words, "--register").partition("=")[0]

    key = secrets.token_urlsafe(16)
    process = subprocess.Popen(
        [sys.executable, "-m", "agentgpt", *args],
        cwd=elsewhere,
        env={**os.environ, "AGENTGPT_API_KEYS": key, "PYTHONPATH": _pythonpath(env_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"listening on http://0\.0\.0\.0:(\d+)", line)
        assert match, f"no URL announced: {line!r}"
        yield Served(f"http://127.0.0.1:{match.group(1)}", key, name, process)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_registered_env_is_made_and_stepped_with_the_key(served):
    env = RemoteEnv(served.url, served.env_name, api_key=served.key)
    try:
        assert env.observation_space == spaces.Box(0.0, 1.0, (1,), np.float32)
        assert env.action_space == spaces.Discrete(2)
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs, [0.0])
        obs, reward, terminated, truncated, _ = env.step(1)
        np.testing.assert_allclose(obs, [1 / 9], rtol=1e-6)
        assert (reward, terminated, truncated) == (-0.01, False, False)
        for _ in range(8):
            obs, reward, terminated, truncated, _ = env.step(1)
        np.testing.assert_allclose(obs, [1.0])
        assert (reward, terminated, truncated) == (1.0, True, False)
    finally:
        env.close()


def test_the_server_refuses_a_client_without_the_key(served):
    for key in [None, served.key + "x"]:
        with pytest.raises(AuthError):
            RemoteEnv(served.url, served.env_name, api_key=key)


def test_the_trainer_command_names_the_served_env_and_takes_the_key_from_the_environment(
    served,
):
    (block,) = [b for b in _blocks(_section(OWN_ENV_SECTION), "bash") if "agentgpt train" in b]
    words = _command_line(block, "train")
    assert words[words.index("train") + 1] == served.env_name
    assert _option(words, "--env-url").endswith(":8000")
    assert "export AGENTGPT_API_KEY=" in block
    assert "--api-key" not in words


def test_the_remote_gymnasium_snippet_runs_as_written(served):
    snippet = next(b for b in _blocks(_section("Remote Gymnasium"), "python") if "RemoteEnv(" in b)
    assert "http://127.0.0.1:8000" in snippet
    result = subprocess.run(
        [sys.executable, "-c", snippet.replace("http://127.0.0.1:8000", served.url)],
        env={**os.environ, "AGENTGPT_API_KEY": served.key, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_server_imports_the_module_from_its_path_not_its_directory(tmp_path):
    # The 'agentgpt' command does not search the directory it starts in: without the
    # module's directory on PYTHONPATH the server stops at start-up, naming the module.
    script = Path(sys.executable).with_name("agentgpt")
    if not script.exists():
        pytest.skip("the agentgpt command is not installed next to this interpreter")
    (tmp_path / "my_envs.py").write_text(_env_module())
    register = _option(_server_command(), "--register")
    result = subprocess.run(
        [str(script), "env-server", "--port", "0", "--register", register],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot import module 'my_envs'" in result.stderr
