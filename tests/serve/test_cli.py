"""``agentgpt serve`` and ``agentgpt eval --policy-url``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from agentgpt import GPTAPI
from agentgpt.agent.evaluate import evaluate
from agentgpt.cli import app


def test_serve_refuses_a_public_address_without_a_key(cartpole_run) -> None:
    result = CliRunner().invoke(app, ["serve", str(cartpole_run), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "Refusing to listen on 0.0.0.0 without an API key" in result.output


def test_serve_needs_a_run_dir_outside_a_container(tmp_path) -> None:
    env = {"SM_MODEL_DIR": str(tmp_path / "absent")}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 2 and "Give a run directory" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "no checkpoint.pt" in result.output


def test_agentgpt_serve_answers_over_http(cartpole_run) -> None:
    env = {**os.environ, "AGENTGPT_API_KEYS": "s3cret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentgpt", "serve", str(cartpole_run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = None
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None
        with GPTAPI(url, "s3cret") as api:
            actions = api.select_action(["a", "b"], np.zeros((2, 4), np.float32))
            assert actions.shape == (2,) and api.info()["run_name"] == cartpole_run.name
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def test_eval_with_a_served_policy_scores_what_the_checkpoint_scores(
    cartpole_run, policy_server, env_server
) -> None:
    local = evaluate(cartpole_run, episodes=6, seed=4)
    url, _ = policy_server(cartpole_run)
    shown = CliRunner().invoke(
        app, ["eval", str(cartpole_run), "--policy-url", url, "--episodes", "6", "--seed", "4"]
    )
    assert shown.exit_code == 0, shown.output
    assert f"mean return {local.mean:.2f} +/- {local.std:.2f} over 6 episodes" in shown.output
    # The same episodes on an env server.
    env_url = env_server(api_keys=["envkey"])
    shown = CliRunner().invoke(
        app,
        [
            "eval",
            str(cartpole_run),
            "--policy-url",
            url,
            "--env-url",
            env_url,
            "--episodes",
            "6",
            "--seed",
            "4",
        ],
        env={"AGENTGPT_API_KEY": "envkey"},
    )
    assert shown.exit_code == 0, shown.output
    assert f"mean return {local.mean:.2f} +/- {local.std:.2f} over 6 episodes" in shown.output


def test_eval_reports_an_unreachable_policy_server(cartpole_run) -> None:
    shown = CliRunner().invoke(
        app, ["eval", str(cartpole_run), "--policy-url", "http://127.0.0.1:9", "--episodes", "1"]
    )
    assert shown.exit_code == 2 and "Cannot evaluate" in shown.output


def test_a_container_serves_the_model_directory(cartpole_run, tmp_path) -> None:
    """Without a run directory, ``agentgpt serve`` serves ``$SM_MODEL_DIR`` (SageMaker's
    /opt/ml/model, where a model archive unpacks: here one run directory inside it) and
    answers ``/ping`` and ``/invocations``. The test binds loopback, not 0.0.0.0."""
    import shutil

    import httpx

    model = tmp_path / "model"
    shutil.copytree(cartpole_run, model / "cartpole")
    env = {**os.environ, "SM_MODEL_DIR": str(model)}
    env.pop("AGENTGPT_API_KEYS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "agentgpt", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = None
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None
        assert httpx.get(url + "/ping").json() == {"status": "ok"}
        answer = httpx.post(
            url + "/invocations",
            json={"method": "select_action", "agent_ids": [0], "observations": [[0.0] * 4]},
        )
        assert answer.status_code == 200 and answer.json()["actions"][0] in (0, 1)
        info = httpx.post(url + "/invocations", json={"method": "info"}).json()
        assert info["run_name"] == "cartpole"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
