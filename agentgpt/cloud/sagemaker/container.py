"""The ``/opt/ml`` layout of SageMaker's bring-your-own-container contract.

SageMaker writes the job's configuration under ``/opt/ml/input/config``, uploads
``/opt/ml/model`` as ``model.tar.gz`` when the job ends, syncs ``/opt/ml/checkpoints``
with the job's checkpoint S3 URI, and reports the text of ``/opt/ml/output/failure`` as
the job's ``FailureReason``. ``AGENTGPT_OPT_ML`` moves the root, so the entry points
(``agentgpt sagemaker train|serve``) run outside a container too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BIND_PORT_ENV",
    "DEFAULT_PORT",
    "OPT_ML_ENV",
    "OptMl",
    "ResourceConfig",
    "fetch_secret",
]

#: Moves the ``/opt/ml`` root (tests, a run outside a container).
OPT_ML_ENV = "AGENTGPT_OPT_ML"
#: The port SageMaker may ask the inference container to listen on.
BIND_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080
#: SageMaker truncates a failure reason; the file keeps the start, which names the cause.
_FAILURE_LIMIT = 1024


@dataclass(frozen=True)
class OptMl:
    """The paths of the contract under one root (``/opt/ml``, or ``$AGENTGPT_OPT_ML``)."""

    root: Path

    @classmethod
    def from_env(cls) -> OptMl:
        return cls(Path(os.environ.get(OPT_ML_ENV) or "/opt/ml"))

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    def hyperparameters(self) -> dict[str, str]:
        """The job's ``HyperParameters`` map (empty when the file is absent)."""
        if not self.hyperparameters_file.exists():
            return {}
        data = json.loads(self.hyperparameters_file.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{self.hyperparameters_file} does not hold a JSON object")
        return data

    def resource_config(self) -> ResourceConfig:
        """The cluster this instance belongs to (one ``algo-1`` when the file is absent)."""
        if not self.resource_config_file.exists():
            return ResourceConfig("algo-1", ("algo-1",), None)
        data = json.loads(self.resource_config_file.read_text())
        return ResourceConfig(
            str(data["current_host"]),
            tuple(str(h) for h in data["hosts"]),
            data.get("network_interface_name"),
        )

    def write_failure(self, reason: str) -> None:
        """Record why the job failed (SageMaker shows it as ``FailureReason``)."""
        self.failure_file.parent.mkdir(parents=True, exist_ok=True)
        self.failure_file.write_text(reason[:_FAILURE_LIMIT])


@dataclass(frozen=True)
class ResourceConfig:
    """``resourceconfig.json``: this instance's name and every instance of the job."""

    current_host: str
    hosts: tuple[str, ...]
    network_interface_name: str | None = None

    @property
    def rank(self) -> int:
        return sorted(self.hosts).index(self.current_host)

    @property
    def world_size(self) -> int:
        return len(self.hosts)

    @property
    def leader(self) -> str:
        """The instance that writes the model (``algo-1``)."""
        return sorted(self.hosts)[0]

    @property
    def is_leader(self) -> bool:
        return self.current_host == self.leader


def fetch_secret(secret_id: str, region: str | None = None, client: Any = None) -> str:
    """The text of a Secrets Manager secret (the env servers' API key). boto3's standard
    configuration applies (the job's role inside SageMaker)."""
    if client is None:
        from agentgpt.cloud.sagemaker.clients import aws_client

        client = aws_client("secretsmanager", region)
    answer = client.get_secret_value(SecretId=secret_id)
    value = answer.get("SecretString")
    if value is None:
        value = answer["SecretBinary"].decode()
    return value.strip()
