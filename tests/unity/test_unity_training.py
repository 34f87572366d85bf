"""Training on a Unity env over the wire: the trainer runs here (it needs torch), the env
server runs in the Unity env-host virtualenv (``AGENTGPT_UNITY_PYTHON``), as on a real
game machine, and serves the stand-in player's cooperative scene (``standin.py``,
``--scene coop``): two behaviours with the same specs, learned by one shared policy.
"""

from __future__ import annotations

import contextlib
import csv
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unity.conftest import write_standin_build

pytest.importorskip("torch", reason="training needs torch (the main environment)")

UNITY_PYTHON = os.environ.get("AGENTGPT_UNITY_PYTHON")
needs_unity_python = pytest.mark.skipif(
    not UNITY_PYTHON,
    reason="set AGENTGPT_UNITY_PYTHON to the python of a virtualenv with agentgpt[unity]"
    " (.ci/run builds one) to train against a Unity env server",
)

#: The cooperative scene's returns per agent and episode (8 steps): a random policy
#: earns 1/3 per step, 2.67 per episode; a perfect team 8.
RANDOM_RETURN, PERFECT_RETURN = 8 / 3, 8.0
#: What the trained agent must reach per agent when it plays deterministically: well
#: above random, more than halfway to perfect. During training (with the trainer's
#: random exploration mixed in) the mean return must have risen clearly above random.
TRAINED_RETURN = 5.0
TRAINING_RETURN = RANDOM_RETURN + 1.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def unity_env_server(build: Path, log: Path, name: str = "Coop") -> Iterator[str]:
    """``agentgpt env-server --unity`` in the Unity virtualenv; yields its URL."""
    port = _free_port()
    command = [
        str(UNITY_PYTHON),
        "-c",
        "import sys; from agentgpt.cli import main; sys.exit(main())",
        "env-server",
        "--port",
        str(port),
        "--unity",
        f"{name}={build}",
        "--unity-base-port",
        str(16000 + os.getpid() % 500 * 8),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"the Unity env server exited: {log.read_text()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the Unity env server never answered: {log.read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@needs_unity_python
@pytest.mark.slow
def test_one_policy_learns_two_unity_behaviours(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agentgpt.agent.team_eval import evaluate_team
    from agentgpt.cli import app
    from agentgpt.remote import RemoteParallelEnv

    build = write_standin_build(tmp_path, scene="coop", python=UNITY_PYTHON, name="Coop")
    with unity_env_server(build, tmp_path / "server.log") as url:
        result = CliRunner().invoke(
            app,
            [
                "train",
                "Coop",
                "--env-url",
                url,
                "--envs-per-host",
                "2",
                "--env-kwargs",
                '{"max_agents": 4}',
                "--total-steps",
                "12288",
                "--seed",
                "3",
                "--runs-dir",
                str(tmp_path),
                "--run-name",
                "coop",
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
        with (tmp_path / "coop" / "metrics.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        first, last = float(rows[0]["mean_return"]), float(rows[-1]["mean_return"])
        assert first < TRAINING_RETURN <= last, (first, last)
        assert float(rows[-1]["mean_length"]) == 8.0  # every Unity episode seen whole
        # The trained agent plays the scene through the PettingZoo client: with two slots
        # per behaviour, one episode is one Unity episode of the four agents.
        env = RemoteParallelEnv(url, "Coop", env_kwargs={"max_agents": 2})
        try:
            score = evaluate_team(tmp_path / "coop", env, episodes=10, seed=0)
        finally:
            env.close()
    assert score.lengths == [8] * 10
    assert score.mean >= 4 * TRAINED_RETURN, (score, 4 * RANDOM_RETURN, 4 * PERFECT_RETURN)


@needs_unity_python
def test_behaviours_with_different_specs_are_refused_clearly(tmp_path: Path) -> None:
    """The stand-in's mixed scene has a discrete and a hybrid behaviour: one policy cannot
    act for both, and ``agentgpt train`` says so before training."""
    from typer.testing import CliRunner

    from agentgpt.cli import app

    build = write_standin_build(tmp_path, scene="mixed", python=UNITY_PYTHON)
    with unity_env_server(build, tmp_path / "server.log", name="Mixed") as url:
        result = CliRunner().invoke(
            app,
            [
                "train",
                "Mixed",
                "--env-url",
                url,
                "--envs-per-host",
                "1",
                "--runs-dir",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 1
    assert "Cannot train on the env servers" in result.output
    assert "must share one observation space and one action space" in result.output
    assert "Walker?team=0/0" in result.output and "Glider?team=0/0" in result.output
