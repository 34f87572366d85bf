"""SageMaker training jobs with plain boto3: the request, and a handle on the job.

:func:`training_job_request` builds the exact ``CreateTrainingJob`` request (no call; the
CLI's ``--dry-run`` prints it). :class:`TrainingJob` starts one and follows it:
``status()``, ``wait()`` (a line per status change, raising with the ``FailureReason``
of a failed job), ``logs()`` from CloudWatch, ``model_data`` and ``stop()``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from agentgpt.cloud.sagemaker.clients import aws_client
from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig
from agentgpt.cloud.sagemaker.errors import SageMakerError, TrainingJobFailed, explain
from agentgpt.cloud.sagemaker.hyperparameters import METRIC_DEFINITIONS, to_string_map

__all__ = [
    "CHECKPOINT_LOCAL_PATH",
    "LOG_GROUP",
    "TrainingJob",
    "job_name_for",
    "training_job_request",
]

#: Where the container finds checkpoints (SageMaker syncs it with ``checkpoint_s3_uri``).
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
#: The CloudWatch log group of every training job.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_AWS_ERRORS = (ClientError, BotoCoreError)
_TERMINAL = ("Completed", "Failed", "Stopped")
_VOLUME_GB = 30
_MAX_NAME = 63


def job_name_for(env_id: str, now: datetime | None = None) -> str:
    """A fresh job name: ``agentgpt-<env>-<UTC time>`` within SageMaker's 63 characters."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    env = re.sub(r"[^A-Za-z0-9]+", "-", env_id.split("/")[-1]).strip("-").lower() or "env"
    head = f"agentgpt-{env}"[: _MAX_NAME - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def training_job_request(
    config: SageMakerConfig,
    hyperparameters: Any,
    job_name: str,
    *,
    env_urls: Sequence[str] = (),
    fleet_timeout: float | None = None,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request for ``hyperparameters`` (a ``Hyperparameters``
    or a mapping of its fields) on ``env_urls`` (none: envs inside the container; ``fleet_timeout``: seconds they may all
    be down before the job fails). The env servers' key is named by
    ``config.env_api_key_secret`` and never included."""
    if config.output_path is None:
        raise ConfigError("output_path: required to train (an s3:// prefix for the model)")
    if env_urls and len(env_urls) < config.instance_count:
        raise ConfigError(
            f"instance_count: {config.instance_count} instances need at least as many env"
            f" servers, one per instance at least, but {len(env_urls)} env URL(s) are given"
        )
    strings = to_string_map(
        hyperparameters,
        env_urls=env_urls,
        env_api_key_secret=config.env_api_key_secret,
        fleet_timeout=fleet_timeout,
    )
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": config.max_run_seconds}
    if config.use_spot:
        stopping["MaxWaitTimeInSeconds"] = config.max_wait_seconds or config.max_run_seconds
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": config.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "RoleArn": config.role_arn,
        "OutputDataConfig": {"S3OutputPath": config.output_path.rstrip("/")},
        "ResourceConfig": {
            "InstanceType": config.instance_type,
            "InstanceCount": config.instance_count,
            "VolumeSizeInGB": _VOLUME_GB,
        },
        "StoppingCondition": stopping,
        "HyperParameters": strings,
        "EnableManagedSpotTraining": config.use_spot,
    }
    checkpoint = config.checkpoint_s3_uri
    if checkpoint is None and config.use_spot:
        # A reclaimed spot instance restarts the job: without checkpoints it starts over.
        checkpoint = f"{config.output_path.rstrip('/')}/{job_name}/checkpoints"
    if checkpoint is not None:
        request["CheckpointConfig"] = {"S3Uri": checkpoint, "LocalPath": CHECKPOINT_LOCAL_PATH}
    vpc = config.vpc_config()
    if vpc is not None:
        request["VpcConfig"] = vpc
    tags = config.tag_list()
    if tags:
        request["Tags"] = tags
    return request


class TrainingJob:
    """A SageMaker training job, by name. ``client``: a boto3 ``sagemaker`` client (made
    with boto3's standard configuration and ``region`` when None); ``logs_client`` the
    CloudWatch Logs one."""

    def __init__(
        self,
        name: str,
        client: Any = None,
        *,
        region: str | None = None,
        logs_client: Any = None,
    ) -> None:
        self.name = name
        self.region = region
        self.client = client if client is not None else aws_client("sagemaker", region)
        self._logs_client = logs_client

    def __repr__(self) -> str:
        return f"TrainingJob({self.name!r})"

    @classmethod
    def start(
        cls,
        config: SageMakerConfig,
        hyperparameters: Any,
        *,
        env_urls: Sequence[str] = (),
        job_name: str | None = None,
        fleet_timeout: float | None = None,
        client: Any = None,
    ) -> TrainingJob:
        """Create the training job and return its handle (the job runs on)."""
        env_id = _env_id(hyperparameters)
        name = job_name or job_name_for(env_id)
        request = training_job_request(
            config, hyperparameters, name, env_urls=env_urls, fleet_timeout=fleet_timeout
        )
        job = cls(name, client, region=config.region)
        try:
            job.client.create_training_job(**request)
        except _AWS_ERRORS as exc:
            raise _explained(exc, f"starting training job {name}", config.role_arn) from exc
        return job

    # ------------------------------------------------------------------ state
    def describe(self) -> dict[str, Any]:
        try:
            return self.client.describe_training_job(TrainingJobName=self.name)
        except _AWS_ERRORS as exc:
            raise _explained(exc, f"describing training job {self.name}") from exc

    def status(self) -> str:
        """``InProgress``, ``Completed``, ``Failed``, ``Stopping`` or ``Stopped``."""
        return str(self.describe()["TrainingJobStatus"])

    @property
    def model_data(self) -> str | None:
        """The S3 URI of the trained ``model.tar.gz`` (None until the job completed)."""
        artifacts = self.describe().get("ModelArtifacts") or {}
        return artifacts.get("S3ModelArtifacts")

    def stop(self) -> None:
        """Ask SageMaker to stop the job (the container gets SIGTERM and saves a
        checkpoint; a job with checkpoints can be resumed by a new job)."""
        try:
            self.client.stop_training_job(TrainingJobName=self.name)
        except _AWS_ERRORS as exc:
            raise _explained(exc, f"stopping training job {self.name}") from exc

    def wait(
        self,
        *,
        poll_seconds: float = 30.0,
        timeout: float | None = None,
        progress: bool = True,
        out: TextIO | None = None,
    ) -> dict[str, Any]:
        """Block until the job ends; print a line on each status change (to ``out``,
        stderr by default) unless ``progress`` is off. Returns the final description of
        a completed job; raises :class:`TrainingJobFailed` (with the failure reason) for
        a failed or stopped one, ``TimeoutError`` after ``timeout`` seconds."""
        out = out or sys.stderr
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            answer = self.describe()
            status = answer["TrainingJobStatus"]
            shown = (status, answer.get("SecondaryStatus"))
            if progress and shown != last:
                out.write(_progress_line(self.name, answer) + "\n")
                out.flush()
            last = shown
            if status in _TERMINAL:
                if status != "Completed":
                    raise TrainingJobFailed(self.name, status, answer.get("FailureReason"))
                return answer
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"training job {self.name} still {status} after {timeout} s")
            time.sleep(poll_seconds)

    # ------------------------------------------------------------------ logs
    @property
    def logs_client(self) -> Any:
        if self._logs_client is None:
            self._logs_client = aws_client("logs", self.region)
        return self._logs_client

    def logs(self, *, follow: bool = False, poll_seconds: float = 10.0) -> Iterator[str]:
        """The job's log lines from CloudWatch (every instance's stream, in order). With
        ``follow``, keep reading until the job has ended."""
        tokens: dict[str, str | None] = {}
        while True:
            ended = not follow or self.status() in _TERMINAL
            yield from self._read_new(tokens)
            if ended:
                return
            time.sleep(poll_seconds)

    def _read_new(self, tokens: dict[str, str | None]) -> Iterator[str]:
        logs = self.logs_client
        try:
            streams = logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/"
            ).get("logStreams", [])
        except _AWS_ERRORS as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                return  # no log yet (the job has not started an instance)
            raise _explained(exc, f"reading the logs of {self.name}") from exc
        for stream in sorted(s["logStreamName"] for s in streams):
            while True:
                request: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                token = tokens.get(stream)
                if token:
                    request["nextToken"] = token
                answer = logs.get_log_events(**request)
                for event in answer.get("events", []):
                    yield event["message"]
                next_token = answer.get("nextForwardToken")
                if not next_token or next_token == token:
                    break
                tokens[stream] = next_token
                if not answer.get("events"):
                    break


def _progress_line(name: str, answer: dict[str, Any]) -> str:
    status = answer["TrainingJobStatus"]
    secondary = answer.get("SecondaryStatus")
    line = f"{name}: {status}" + (f" ({secondary})" if secondary else "")
    transitions = answer.get("SecondaryStatusTransitions") or []
    if transitions and transitions[-1].get("StatusMessage"):
        line += f" - {transitions[-1]['StatusMessage']}"
    return line


def _env_id(hyperparameters: Any) -> str:
    value = getattr(hyperparameters, "env_id", None)
    if value is None and isinstance(hyperparameters, dict):
        value = hyperparameters.get("env_id")
    return str(value or "env")


def _explained(exc: Exception, action: str, role_arn: str | None = None) -> SageMakerError:
    if isinstance(exc, ClientError):
        return explain(exc, action, role_arn)
    return SageMakerError(f"{action}: {exc}")
