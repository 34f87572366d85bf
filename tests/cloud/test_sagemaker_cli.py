"""``agentgpt cloud ...`` against moto in server mode, through boto3's standard
configuration (``AWS_ENDPOINT_URL``, ``AWS_REGION``), as a user's shell reaches AWS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("boto3")
from typer.testing import CliRunner  # noqa: E402

from agentgpt.cli import app  # noqa: E402
from agentgpt.cloud.sagemaker.clients import aws_client  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/agentgpt-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agentgpt-sagemaker:0.1"
BUCKET = "agentgpt-cli-bucket"
runner = CliRunner()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sagemaker.yaml"
    path.write_text(
        f"role_arn: {ROLE}\nimage_uri: {IMAGE}\noutput_path: s3://{BUCKET}/agentgpt\n"
        "env_api_key_secret: agentgpt/env-key\n"
    )
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "cartpole"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"weights")
    (run / "hyperparameters.yaml").write_text("env_id: CartPole-v1\n")
    return run


def _requests(output: str) -> list[dict]:
    """The JSON documents a --dry-run printed, in order."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (start := output.find("{", i)) != -1:
        document, i = decoder.raw_decode(output, start)
        found.append(document)
    return found


def test_train_dry_run_prints_the_request_and_the_job_name(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    result = runner.invoke(
        app,
        [
            "cloud",
            "train",
            "CartPole-v1",
            "--config",
            str(config_file),
            "--env-url",
            "https://envs.example.com",
            "--set",
            "total_steps=50000",
            "--set",
            "learning_rate=3e-4",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    (call,) = _requests(result.output)
    assert call["operation"] == "create_training_job"
    request = call["request"]
    assert request["HyperParameters"]["total_steps"] == "50000"
    assert request["HyperParameters"]["learning_rate"] == "0.0003"
    assert request["HyperParameters"]["env_urls"] == "https://envs.example.com"
    last = result.output.strip().splitlines()[-1]
    assert last == request["TrainingJobName"]


def test_train_status_deploy_and_delete_against_moto(
    aws_account: str, config_file: Path, run_dir: Path
) -> None:
    aws_client("s3").create_bucket(Bucket=BUCKET)
    result = runner.invoke(app, ["cloud", "train", "CartPole-v1", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    job = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"agentgpt-cartpole-v1-\d{8}-\d{6}", job)

    result = runner.invoke(app, ["cloud", "status", job])
    assert result.exit_code == 0, result.output
    assert f"{job}: Completed" in result.output
    assert f"s3://{BUCKET}/agentgpt/{job}/output/model.tar.gz" in result.output

    result = runner.invoke(app, ["cloud", "stop", job, "--dry-run"])
    assert _requests(result.output) == [
        {"operation": "stop_training_job", "request": {"TrainingJobName": job}}
    ]

    result = runner.invoke(
        app,
        [
            "cloud",
            "deploy",
            str(run_dir),
            "--endpoint",
            "cartpole",
            "--config",
            str(config_file),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    operations = [call["operation"] for call in _requests(result.output)]
    assert operations == ["put_object", "create_model", "create_endpoint_config", "create_endpoint"]
    assert aws_client("sagemaker").list_models()["Models"] == []  # nothing was sent

    result = runner.invoke(
        app,
        ["cloud", "deploy", str(run_dir), "--endpoint", "cartpole", "--config", str(config_file)],
    )
    assert result.exit_code == 0, result.output
    assert "Endpoint cartpole: InService" in result.output
    key = "agentgpt/models/cartpole/model.tar.gz"
    assert aws_client("s3").head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0

    result = runner.invoke(app, ["cloud", "delete-endpoint", "cartpole"])
    assert result.exit_code == 0, result.output
    assert "Deleted endpoint cartpole" in result.output
    assert aws_client("sagemaker").list_endpoints()["Endpoints"] == []


def test_train_wait_follows_the_job_to_its_end(aws_account: str, config_file: Path) -> None:
    result = runner.invoke(
        app, ["cloud", "train", "CartPole-v1", "--config", str(config_file), "--wait"]
    )
    assert result.exit_code == 0, result.output
    job = result.output.strip().splitlines()[-1]
    assert f"{job}: Completed" in result.output


def test_a_bad_config_stops_before_any_call(tmp_path: Path) -> None:
    path = tmp_path / "sagemaker.yaml"
    path.write_text(f"role_arn: {ROLE}\nimage_uri: {IMAGE}\noutput_path: /local/dir\n")
    result = runner.invoke(app, ["cloud", "train", "CartPole-v1", "--config", str(path)])
    assert result.exit_code == 1
    assert "output_path" in result.output


def test_build_image_logs_in_builds_and_pushes_to_ecr(
    aws_account: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Docker engine here: a ``docker`` stand-in records what it was asked to do."""
    record = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "ARGS $*" >> {record}\n'
        f'if [ "$1" = login ]; then echo "STDIN $(cat)" >> {record}; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    repo = Path(__file__).resolve().parents[2]
    result = runner.invoke(app, ["cloud", "build-image", "--tag", "0.1", "--source", str(repo)])
    assert result.exit_code == 0, result.output
    image = result.output.strip().splitlines()[-1]
    assert re.fullmatch(
        r"\d{12}\.dkr\.ecr\.us-east-1\.amazonaws\.com/agentgpt-sagemaker:0\.1", image
    )
    lines = record.read_text().splitlines()
    args = [line for line in lines if line.startswith("ARGS")]
    assert args[0] == "ARGS info --format {{.ServerVersion}}"
    assert args[1].startswith("ARGS login --username AWS --password-stdin ")
    assert args[2] == f"ARGS build -f {repo}/deploy/sagemaker/Dockerfile -t {image} {repo}"
    assert args[3] == f"ARGS push {image}"
    # The registry password went on stdin only, never on a command line.
    (stdin,) = [line for line in lines if line.startswith("STDIN")]
    password = stdin.removeprefix("STDIN ")
    assert password and not any(password in line for line in args)
    repositories = aws_client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repositories] == ["agentgpt-sagemaker"]
