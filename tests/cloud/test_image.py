"""The env server image: its build context, the command it runs, and building and pushing.

No Docker engine runs here, so the Dockerfile's own command line (ENTRYPOINT + CMD) is run
directly, against the context's env folder, and the build and push are tested with a
stand-in ``docker`` program on PATH that records what it was asked to do.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest

from agentgpt.cloud.image import (
    DockerUnavailable,
    ImageBuildError,
    docker_available,
    entrypoint_command,
    write_build_context,
)
from agentgpt.cloud.launcher import ECR_REPOSITORY, push_image_to_ecr
from agentgpt.remote import RemoteEnv

KEY = "image-test-key-0123456789"

ENV_MODULE = '''
import gymnasium as gym
import numpy as np


class Counter(gym.Env):
    """Counts up to 5."""

    observation_space = gym.spaces.Box(0, 5, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.n += 1
        return np.full(1, self.n, np.float32), 1.0, self.n >= 5, False, {}


def make(**kwargs):
    return Counter()
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_dockerfile_runs_the_env_server_with_the_users_env(tmp_path: Path) -> None:
    module = tmp_path / "counter_env.py"
    module.write_text(ENV_MODULE)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")
    port = _free_port()
    context = write_build_context(
        tmp_path / "context",
        register={"Counter-v0": "counter_env:make"},
        env_paths=[module],
        requirements=requirements,
        port=port,
    )
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.startswith("# An agentgpt env server")
    assert "FROM python:3.11.11-slim-bookworm" in dockerfile
    assert "torch" not in dockerfile
    assert (context / "env" / "counter_env.py").read_text() == ENV_MODULE
    assert (context / "requirements.txt").read_text() == "numpy\n"

    command = entrypoint_command(context / "Dockerfile")
    assert command[:2] == ["agentgpt", "env-server"]
    assert command[2:] == [
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--register",
        "Counter-v0=counter_env:make",
    ]
    # Run it as the container would: the env folder on PYTHONPATH, the key in the env.
    env = dict(os.environ, PYTHONPATH=str(context / "env"), AGENTGPT_API_KEYS=KEY)
    server = subprocess.Popen(
        [sys.executable, "-m", "agentgpt", *command[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        remote = RemoteEnv(f"http://127.0.0.1:{port}", "Counter-v0", api_key=KEY)
        remote.reset(seed=0)
        obs, reward, *_ = remote.step(1)
        assert obs.tolist() == [1.0] and reward == 1.0
        remote.close()
    finally:
        server.terminate()
        server.wait(10)


def _fake_docker(tmp_path: Path, fail_build: bool = False, engine: bool = True) -> Path:
    """A ``docker`` program that records its arguments and stdin in calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    script = bin_dir / "docker"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "ARGS $*" >> {log}
            case "$1" in
              info) {"exit 0" if engine else "echo 'Cannot connect to the Docker daemon' >&2; exit 1"} ;;
              login) echo "STDIN $(cat)" >> {log} ;;
              build) {"echo 'step 3/9: pip install failed' >&2; exit 1" if fail_build else "exit 0"} ;;
            esac
            exit 0
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_build_and_push_log_in_with_the_ecr_password_on_stdin(
    tmp_path: Path, aws_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_docker(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    context = write_build_context(tmp_path / "context")
    image = push_image_to_ecr(context, "cartpole-1")
    assert image.endswith(f"/{ECR_REPOSITORY}:cartpole-1")
    calls = (tmp_path / "calls.log").read_text().splitlines()
    login = next(line for line in calls if line.startswith("ARGS login"))
    assert "--password-stdin" in login
    password = next(line for line in calls if line.startswith("STDIN ")).removeprefix("STDIN ")
    assert password and password not in login
    assert f"ARGS build -t {image} {context}" in calls
    assert f"ARGS push {image}" in calls
    ecr = boto3.client("ecr", region_name="us-east-1")
    assert ecr.describe_repositories(repositoryNames=[ECR_REPOSITORY])["repositories"]


def test_a_failing_build_is_reported_and_the_new_repository_removed(
    tmp_path: Path, aws_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_docker(tmp_path, fail_build=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    context = write_build_context(tmp_path / "context")
    with pytest.raises(ImageBuildError, match="(?s)docker build failed .*pip install failed"):
        push_image_to_ecr(context, "cartpole-1")
    ecr = boto3.client("ecr", region_name="us-east-1")
    assert ecr.describe_repositories()["repositories"] == []


def test_without_a_docker_engine_the_context_is_kept_and_the_user_told(
    tmp_path: Path, aws_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_docker(tmp_path, engine=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert not docker_available()
    context = write_build_context(tmp_path / "context")
    with pytest.raises(DockerUnavailable, match=f"(?s)build context is in {context}.*--image"):
        push_image_to_ecr(context, "cartpole-1")
    assert (context / "Dockerfile").exists()
    ecr = boto3.client("ecr", region_name="us-east-1")
    assert ecr.describe_repositories()["repositories"] == []


def test_the_deploy_folder_holds_what_the_command_writes(tmp_path: Path) -> None:
    """deploy/docker is the generic image (built-in and installed envs); it must not drift."""
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "docker"
    context = write_build_context(tmp_path / "context", agentgpt_requirement="agentgpt")
    for name in ("Dockerfile", ".dockerignore", "requirements.txt"):
        assert (deploy / name).read_text() == (context / name).read_text(), name


def test_launch_on_cloud_builds_pushes_and_runs_the_image(
    tmp_path: Path, aws_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentgpt.cloud import aws
    from agentgpt.cloud.launcher import EnvLauncher

    module = tmp_path / "counter_env.py"
    module.write_text(ENV_MODULE)
    bin_dir = _fake_docker(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("AGENTGPT_API_KEY", raising=False)
    hosts = EnvLauncher.launch_on_cloud(
        "Counter-v0",
        allow_cidr="198.51.100.0/24",
        register={"Counter-v0": "counter_env:make"},
        env_paths=[module],
        build_dir=tmp_path / "context",
        name="counter",
        wait=False,
    )
    try:
        assert hosts.key_generated and len(hosts.api_key) >= 40
        assert (tmp_path / "context" / "env" / "counter_env.py").exists()
        calls = (tmp_path / "calls.log").read_text()
        pushed = next(
            line.split()[-1] for line in calls.splitlines() if line.startswith("ARGS push")
        )
        assert pushed.endswith(f"/{ECR_REPOSITORY}:counter")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        [instance_id] = hosts.instance_ids
        script = base64.b64decode(
            ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")[
                "UserData"
            ]["Value"]
        ).decode()
        assert pushed in script and "Counter-v0=counter_env:make" in script
        assert hosts.api_key not in script
    finally:
        hosts.close()
    assert aws.list_groups() == []


def test_launch_on_cloud_without_docker_creates_nothing_in_aws(
    tmp_path: Path, aws_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentgpt.cloud.launcher import EnvLauncher

    bin_dir = _fake_docker(tmp_path, engine=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DockerUnavailable, match="no Docker engine"):
        EnvLauncher.launch_on_cloud(
            "CartPole-v1", allow_cidr="198.51.100.0/24", build_dir=tmp_path / "ctx", name="nodock"
        )
    assert (tmp_path / "ctx" / "Dockerfile").exists()
    ssm = boto3.client("ssm", region_name="us-east-1")
    assert ssm.describe_parameters()["Parameters"] == []
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert ec2.describe_instances()["Reservations"] == []
