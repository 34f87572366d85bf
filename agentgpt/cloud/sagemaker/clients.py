"""boto3 clients with boto3's standard configuration (profiles, credentials,
``AWS_ENDPOINT_URL``), the region taken from the config, else ``AWS_REGION`` (which the
AWS SDKs and CLI v2 read, and older botocore does not), else ``AWS_DEFAULT_REGION`` or
the profile's."""

from __future__ import annotations

import os
from typing import Any

from agentgpt.cloud.sagemaker.config import ConfigError

__all__ = ["aws_client", "resolve_region"]


def resolve_region(region: str | None = None) -> str:
    import boto3

    region = region or os.environ.get("AWS_REGION") or None
    session = boto3.Session(region_name=region) if region else boto3.Session()
    if not session.region_name:
        raise ConfigError("region: none given; set region in the config or AWS_REGION")
    return str(session.region_name)


def aws_client(service: str, region: str | None = None) -> Any:
    import boto3

    return boto3.Session(region_name=resolve_region(region)).client(service)
