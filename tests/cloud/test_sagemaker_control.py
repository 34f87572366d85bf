"""The SageMaker control plane through boto3 against moto in server mode on loopback.

moto lacks ``stop_training_job`` and ``update_endpoint``, never fails a job, and its
``invoke_endpoint`` returns canned bodies: those calls, and AWS's error answers, are
covered with botocore's Stubber (the endpoint's real answers are tested through a
shim in test_sagemaker_container.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

from agentgpt.api import AgentGPT, EndpointGPTAPI  # noqa: E402
from agentgpt.cloud.sagemaker.clients import aws_client  # noqa: E402
from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig  # noqa: E402
from agentgpt.cloud.sagemaker.endpoints import delete_endpoint, deploy  # noqa: E402
from agentgpt.cloud.sagemaker.errors import SageMakerError  # noqa: E402
from agentgpt.cloud.sagemaker.hyperparameters import from_string_map  # noqa: E402
from agentgpt.cloud.sagemaker.jobs import LOG_GROUP, TrainingJob  # noqa: E402
from agentgpt.train.hyperparameters import Hyperparameters  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/agentgpt-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agentgpt-sagemaker:0.1"
API_KEY = "env-key-9d2e71aa0c"
BUCKET = "agentgpt-test-bucket"


@pytest.fixture
def cfg(aws_account: str) -> SageMakerConfig:
    aws_client("s3").create_bucket(Bucket=BUCKET)
    aws_client("secretsmanager").create_secret(Name="agentgpt/env-key", SecretString=API_KEY)
    return SageMakerConfig(
        role_arn=ROLE,
        image_uri=IMAGE,
        output_path=f"s3://{BUCKET}/out",
        use_spot=True,
        max_run_seconds=3600,
        max_wait_seconds=7200,
        env_api_key_secret="agentgpt/env-key",
        tags={"project": "agentgpt-tests"},
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every request body and header block boto3 sends during the test."""
    bodies: list[bytes] = []
    original = boto3.session.Session.client

    def client(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)

        def record(request: Any, **_: Any) -> None:
            body = request.body or b""
            bodies.append(body if isinstance(body, bytes) else str(body).encode())
            bodies.append(json.dumps(dict(request.headers), default=str).encode())
            bodies.append(request.url.encode())

        made.meta.events.register("before-send", record)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return bodies


def test_train_on_cloud_creates_the_job(cfg: SageMakerConfig, sent: list[bytes]) -> None:
    hp = Hyperparameters(env_id="CartPole-v1", total_steps=20_000, learning_rate=3e-4)
    job = AgentGPT.train_on_cloud(cfg, hp, env_urls=["https://envs.example.com:8000"], seed=7)
    assert job.name.startswith("agentgpt-cartpole-v1-")
    description = job.describe()
    fields, container = from_string_map(Hyperparameters, description["HyperParameters"])
    assert Hyperparameters(**fields) == hp.replace(seed=7)
    assert container["env_urls"] == ["https://envs.example.com:8000"]
    assert container["env_api_key_secret"] == "agentgpt/env-key"
    assert description["RoleArn"] == ROLE
    assert description["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert description["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    # moto completes jobs at once.
    assert job.status() == "Completed"
    assert job.wait(progress=False, poll_seconds=0)["TrainingJobStatus"] == "Completed"
    assert job.model_data == f"s3://{BUCKET}/out/{job.name}/output/model.tar.gz"
    # The key itself went nowhere: not in the request, a header, or a URL.
    assert sent and not any(API_KEY.encode() in body for body in sent)


def test_the_request_carries_spot_metrics_and_no_environment(cfg: SageMakerConfig) -> None:
    from agentgpt.cloud.sagemaker.jobs import training_job_request

    request = training_job_request(cfg, Hyperparameters(), "job-1", env_urls=["http://a:1"])
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    names = {d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"train:mean_return", "train:policy_loss", "train:value_loss"} <= names
    assert "Environment" not in request
    assert request["Tags"] == [{"Key": "project", "Value": "agentgpt-tests"}]
    assert API_KEY not in json.dumps(request)


def test_more_instances_than_env_servers_fail_before_any_call(cfg: SageMakerConfig) -> None:
    from agentgpt.cloud.sagemaker.jobs import training_job_request

    cfg = dataclasses.replace(cfg, instance_count=3)
    with pytest.raises(ConfigError, match="instance_count: 3 instances .* 2 env URL"):
        training_job_request(cfg, Hyperparameters(), "job-1", env_urls=["http://a:1", "http://b:1"])
    # Without env URLs every instance makes its own envs.
    assert (
        training_job_request(cfg, Hyperparameters(), "job-1")["ResourceConfig"]["InstanceCount"]
        == 3
    )


def test_wait_prints_progress_and_logs_come_from_cloudwatch(cfg: SageMakerConfig) -> None:
    job = TrainingJob.start(cfg, Hyperparameters(), job_name="agentgpt-logs-1")
    logs = aws_client("logs")
    logs.create_log_group(logGroupName=LOG_GROUP)
    now = int(time.time() * 1000)  # CloudWatch drops events older than 14 days
    for host, lines in (
        ("algo-1", ["starting", "agentgpt-metrics update=1"]),
        ("algo-2", ["peer"]),
    ):
        stream = f"{job.name}/{host}-1700000000"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
        )
    assert list(job.logs()) == ["starting", "agentgpt-metrics update=1", "peer"]
    assert list(job.logs(follow=True, poll_seconds=0)) == [
        "starting",
        "agentgpt-metrics update=1",
        "peer",
    ]
    out = io.StringIO()
    job.wait(out=out, poll_seconds=0)
    assert out.getvalue().startswith(f"{job.name}: Completed")


def test_stop_is_sent(aws_account: str) -> None:
    client = aws_client("sagemaker")
    with Stubber(client) as stub:  # moto has no stop_training_job
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "agentgpt-x"})
        TrainingJob("agentgpt-x", client).stop()
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "AccessDeniedException",
            "User is not authorized to perform sagemaker:CreateTrainingJob",
            "access denied",
        ),
        (
            "ValidationException",
            "Could not assume role arn:aws:iam::123456789012:role/agentgpt-sagemaker",
            "cannot use the role",
        ),
        (
            "ResourceLimitExceeded",
            "The account-level service limit 'ml.p3.2xlarge for spot training' is 0",
            "resource limit",
        ),
    ],
)
def test_aws_errors_become_clear_messages(
    cfg: SageMakerConfig, code: str, message: str, expected: str
) -> None:
    client = aws_client("sagemaker")
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_training_job", service_error_code=code, service_message=message
        )
        with pytest.raises(SageMakerError, match=expected) as raised:
            TrainingJob.start(cfg, Hyperparameters(), job_name="agentgpt-err", client=client)
    assert message in str(raised.value)


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "cartpole"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"weights")
    (run / "hyperparameters.yaml").write_text("env_id: CartPole-v1\n")
    (run / "timing.csv").write_text("not packed\n")
    return run


def test_run_on_cloud_uploads_deploys_and_delete_removes_everything(
    cfg: SageMakerConfig, tmp_path: Path
) -> None:
    api = AgentGPT.run_on_cloud(cfg, "agentgpt-cartpole", model_data=_run_dir(tmp_path))
    assert isinstance(api, EndpointGPTAPI)
    sm = aws_client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="agentgpt-cartpole")
    assert endpoint["EndpointStatus"] == "InService"
    config_name = endpoint["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    assert variant["InstanceType"] == cfg.endpoint_instance_type
    model = sm.describe_model(ModelName=variant["ModelName"])
    uri = model["PrimaryContainer"]["ModelDataUrl"]
    assert uri == f"s3://{BUCKET}/out/models/agentgpt-cartpole/model.tar.gz"
    assert model["PrimaryContainer"]["Image"] == IMAGE
    body = (
        aws_client("s3").get_object(Bucket=BUCKET, Key=uri.split(f"{BUCKET}/", 1)[1])["Body"].read()
    )
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert sorted(archive.getnames()) == ["checkpoint.pt", "hyperparameters.yaml"]

    deleted = AgentGPT.delete_endpoint("agentgpt-cartpole")
    assert deleted == [
        "endpoint agentgpt-cartpole",
        f"endpoint config {config_name}",
        f"model {variant['ModelName']}",
    ]
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    with pytest.raises(SageMakerError, match="no endpoint"):
        delete_endpoint("agentgpt-cartpole")


def test_an_existing_endpoint_is_updated(cfg: SageMakerConfig) -> None:
    client = aws_client("sagemaker")
    uri = f"s3://{BUCKET}/out/job/output/model.tar.gz"
    in_service = {
        "EndpointName": "ep",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        "EndpointStatus": "InService",
        "CreationTime": 0,
        "LastModifiedTime": 0,
    }
    arn = {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}
    with Stubber(client) as stub:  # moto has no update_endpoint
        stub.add_response("describe_endpoint", {**in_service, "EndpointConfigName": "ep-old"})
        stub.add_response("create_model", arn)
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        )
        stub.add_response("update_endpoint", {"EndpointArn": in_service["EndpointArn"]})
        stub.add_response(
            "describe_endpoint",
            {**in_service, "EndpointStatus": "Updating", "EndpointConfigName": "ep-old"},
        )
        stub.add_response("describe_endpoint", {**in_service, "EndpointConfigName": "ep-new"})
        stub.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": "ep-old",
                "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/ep-old",
                "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "ep-old"}],
                "CreationTime": 0,
            },
            {"EndpointConfigName": "ep-old"},
        )
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "ep-old"})
        stub.add_response("delete_model", {}, {"ModelName": "ep-old"})
        answer = deploy(cfg, "ep", uri, client=client, poll_seconds=0)
        stub.assert_no_pending_responses()
    assert answer["EndpointStatus"] == "InService"


def test_a_failed_endpoint_raises_its_reason(cfg: SageMakerConfig) -> None:
    client = aws_client("sagemaker")
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_endpoint", "ValidationException", "Could not find endpoint ep"
        )
        stub.add_response(
            "create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        )
        stub.add_response(
            "create_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep"},
        )
        stub.add_response(
            "describe_endpoint",
            {
                "EndpointName": "ep",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
                "EndpointStatus": "Failed",
                "FailureReason": "The primary container did not pass the ping health check.",
                "CreationTime": 0,
                "LastModifiedTime": 0,
            },
        )
        with pytest.raises(SageMakerError, match="ping health check"):
            deploy(cfg, "ep", f"s3://{BUCKET}/m/model.tar.gz", client=client, poll_seconds=0)
