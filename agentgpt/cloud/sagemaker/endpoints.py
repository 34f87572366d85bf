"""Real-time SageMaker endpoints with plain boto3: model, endpoint config, endpoint.

:func:`deploy_requests` builds the exact requests (the CLI's ``--dry-run`` prints them);
:func:`deploy` sends them, updating an endpoint that already exists, and waits until it
is ``InService``; :func:`delete_endpoint` removes the endpoint, its config and its
models. :func:`pack_model` turns a run directory into the ``model.tar.gz`` SageMaker
unpacks into ``/opt/ml/model``, and :func:`upload_model` puts it in S3.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agentgpt.cloud.sagemaker.clients import aws_client
from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig, split_s3
from agentgpt.cloud.sagemaker.errors import SageMakerError, explain

__all__ = [
    "MODEL_FILES",
    "VARIANT_NAME",
    "delete_endpoint",
    "deploy",
    "deploy_requests",
    "endpoint_exists",
    "model_upload_uri",
    "pack_model",
    "upload_model",
]

VARIANT_NAME = "AllTraffic"
#: What a model archive holds of a run directory (what the server loads, and metrics).
MODEL_FILES = ("checkpoint.pt", "hyperparameters.yaml", "tuned.yaml", "metrics.csv")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_AWS_ERRORS = (ClientError, BotoCoreError)


def check_name(name: str, what: str = "endpoint name") -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{what}: {name!r} must be 1-63 letters, digits and hyphens, starting with a"
            " letter or digit"
        )
    return name


def _versioned(endpoint_name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"{endpoint_name[: 63 - len(stamp) - 1].rstrip('-')}-{stamp}"


# ---------------------------------------------------------------------- model archive
def pack_model(run_dir: str | Path) -> bytes:
    """``model.tar.gz`` of a run directory: its checkpoint and hyperparameters at the
    archive's root, as ``/opt/ml/model`` must hold them."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint.pt").is_file():
        raise FileNotFoundError(f"no checkpoint.pt in {run_dir} (a run directory)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in MODEL_FILES:
            path = run_dir / name
            if path.is_file():
                archive.add(path, arcname=name)
    return buffer.getvalue()


def model_upload_uri(config: SageMakerConfig, name: str) -> str:
    """Where :func:`upload_model` puts a run's archive: under ``output_path``."""
    if config.output_path is None:
        raise ConfigError("output_path: required to upload a model (an s3:// prefix)")
    return f"{config.output_path.rstrip('/')}/models/{name}/model.tar.gz"


def upload_model(
    config: SageMakerConfig, run_dir: str | Path, name: str, client: Any = None
) -> str:
    """Pack ``run_dir`` and upload it; return its S3 URI."""
    uri = model_upload_uri(config, name)
    body = pack_model(run_dir)
    bucket, key = split_s3(uri)
    s3 = client if client is not None else aws_client("s3", config.region)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, **_s3_tags(config))
    except _AWS_ERRORS as exc:
        raise _explained(exc, f"uploading the model to {uri}") from exc
    return uri


def _s3_tags(config: SageMakerConfig) -> dict[str, str]:
    if not config.tags:
        return {}
    from urllib.parse import urlencode

    return {"Tagging": urlencode(config.tags)}


# ---------------------------------------------------------------------- requests
def deploy_requests(
    config: SageMakerConfig,
    endpoint_name: str,
    model_data: str,
    *,
    version_name: str | None = None,
    update: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The calls that deploy ``model_data`` (an ``s3://.../model.tar.gz``) as
    ``endpoint_name``: ``create_model``, ``create_endpoint_config``, then
    ``create_endpoint`` (or ``update_endpoint`` when ``update``)."""
    check_name(endpoint_name)
    if not isinstance(model_data, str) or not model_data.startswith("s3://"):
        raise ConfigError(
            f"model_data: expected an s3:// URI of a model.tar.gz, got {model_data!r}"
        )
    name = version_name or _versioned(endpoint_name)
    check_name(name, "model name")
    tags = config.tag_list({"agentgpt:endpoint": endpoint_name})
    model: dict[str, Any] = {
        "ModelName": name,
        "PrimaryContainer": {"Image": config.image_uri, "ModelDataUrl": model_data},
        "ExecutionRoleArn": config.role_arn,
        "Tags": tags,
    }
    vpc = config.vpc_config()
    if vpc is not None:
        model["VpcConfig"] = vpc
    endpoint_config = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT_NAME,
                "ModelName": name,
                "InitialInstanceCount": config.endpoint_instance_count,
                "InstanceType": config.endpoint_instance_type,
            }
        ],
        "Tags": tags,
    }
    endpoint: dict[str, Any] = {"EndpointName": endpoint_name, "EndpointConfigName": name}
    if update:
        last = ("update_endpoint", endpoint)
    else:
        last = ("create_endpoint", {**endpoint, "Tags": tags})
    return [("create_model", model), ("create_endpoint_config", endpoint_config), last]


# ---------------------------------------------------------------------- calls
def endpoint_exists(endpoint_name: str, client: Any) -> dict[str, Any] | None:
    """The endpoint's description, or None when there is no such endpoint."""
    try:
        return client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise _explained(exc, f"describing endpoint {endpoint_name}") from exc


def deploy(
    config: SageMakerConfig,
    endpoint_name: str,
    model_data: str,
    *,
    client: Any = None,
    wait: bool = True,
    poll_seconds: float = 15.0,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Create (or update) the endpoint and, with ``wait``, block until it is
    ``InService``; returns its description. A model and config of a failed deployment
    are deleted again; an update deletes the config and models it replaced."""
    sm = client if client is not None else aws_client("sagemaker", config.region)
    previous = endpoint_exists(endpoint_name, sm)
    calls = deploy_requests(config, endpoint_name, model_data, update=previous is not None)
    created: list[tuple[str, str]] = []
    try:
        for operation, params in calls:
            getattr(sm, operation)(**params)
            if operation == "create_model":
                created.append(("model", params["ModelName"]))
            elif operation == "create_endpoint_config":
                created.append(("config", params["EndpointConfigName"]))
    except _AWS_ERRORS as exc:
        _delete_quietly(sm, created)
        raise _explained(exc, f"deploying endpoint {endpoint_name}", config.role_arn) from exc
    description = (
        wait_in_service(endpoint_name, sm, poll_seconds=poll_seconds, timeout=timeout)
        if wait
        else sm.describe_endpoint(EndpointName=endpoint_name)
    )
    if previous is not None:
        old = previous.get("EndpointConfigName")
        if old and old != calls[1][1]["EndpointConfigName"]:
            _delete_config_and_models(sm, old)
    return description


def wait_in_service(
    endpoint_name: str, client: Any, *, poll_seconds: float = 15.0, timeout: float = 1800.0
) -> dict[str, Any]:
    """Block until the endpoint is ``InService``; raise with SageMaker's reason when it
    fails, ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = client.describe_endpoint(EndpointName=endpoint_name)
        except _AWS_ERRORS as exc:
            raise _explained(exc, f"waiting for endpoint {endpoint_name}") from exc
        status = answer["EndpointStatus"]
        if status == "InService":
            return answer
        if status in ("Failed", "OutOfService", "Deleting", "RollingBack"):
            reason = answer.get("FailureReason") or status
            raise SageMakerError(f"endpoint {endpoint_name} is {status}: {reason}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"endpoint {endpoint_name} still {status} after {timeout} s")
        time.sleep(poll_seconds)


def delete_endpoint(
    endpoint_name: str, client: Any = None, *, region: str | None = None
) -> list[str]:
    """Delete the endpoint, its endpoint config and the models the config names; return
    what was deleted (``"endpoint NAME"``, ...). An endpoint that does not exist is an
    error; parts already gone are skipped."""
    sm = client if client is not None else aws_client("sagemaker", region)
    description = endpoint_exists(endpoint_name, sm)
    if description is None:
        raise SageMakerError(f"there is no endpoint {endpoint_name}")
    deleted = []
    try:
        sm.delete_endpoint(EndpointName=endpoint_name)
    except _AWS_ERRORS as exc:
        raise _explained(exc, f"deleting endpoint {endpoint_name}") from exc
    deleted.append(f"endpoint {endpoint_name}")
    deleted += _delete_config_and_models(sm, description["EndpointConfigName"])
    return deleted


def _delete_config_and_models(sm: Any, config_name: str) -> list[str]:
    deleted = []
    try:
        models = [
            v["ModelName"]
            for v in sm.describe_endpoint_config(EndpointConfigName=config_name)[
                "ProductionVariants"
            ]
        ]
    except ClientError as exc:
        if not _not_found(exc):
            raise _explained(exc, f"describing endpoint config {config_name}") from exc
        models = []
    else:
        try:
            sm.delete_endpoint_config(EndpointConfigName=config_name)
            deleted.append(f"endpoint config {config_name}")
        except ClientError as exc:
            if not _not_found(exc):
                raise _explained(exc, f"deleting endpoint config {config_name}") from exc
    for model in models:
        try:
            sm.delete_model(ModelName=model)
            deleted.append(f"model {model}")
        except ClientError as exc:
            if not _not_found(exc):
                raise _explained(exc, f"deleting model {model}") from exc
    return deleted


def _delete_quietly(sm: Any, created: list[tuple[str, str]]) -> None:
    for kind, name in reversed(created):
        try:
            if kind == "config":
                sm.delete_endpoint_config(EndpointConfigName=name)
            else:
                sm.delete_model(ModelName=name)
        except _AWS_ERRORS:
            pass


def _not_found(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") in ("ResourceNotFound", "ValidationException", "ValidationError") and (
        "could not find" in message or "not found" in message or "does not exist" in message
    )


def _explained(exc: Exception, action: str, role_arn: str | None = None) -> SageMakerError:
    if isinstance(exc, ClientError):
        return explain(exc, action, role_arn)
    return SageMakerError(f"{action}: {exc}")
