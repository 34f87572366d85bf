"""``SageMakerConfig``: where and how SageMaker trains and serves, checked before any call.

Every field is validated when the config is built, so a bad value stops with a message
naming the field before boto3 is asked anything. :meth:`SageMakerConfig.from_yaml` reads
a mapping whose keys are the field names; fields left out fall back to boto3's own
configuration where it has one (the region) or to the defaults below.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "SageMakerConfig", "split_s3"]

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9-]+$")
# An ECR (or other registry) image reference: registry/repository[:tag][@digest].
_IMAGE_URI = re.compile(r"^[\w.-]+(:\d+)?/[\w./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
_SECRET_ID = re.compile(
    r"^(arn:aws[a-z-]*:secretsmanager:[\w-]+:\d{12}:secret:)?[\w/+=.@-]{1,512}$"
)
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")
#: SageMaker's longest training job (28 days).
_MAX_RUN_LIMIT = 28 * 24 * 3600


class ConfigError(ValueError):
    """A field of :class:`SageMakerConfig` has a bad value; the message names it."""


@dataclass(frozen=True)
class SageMakerConfig:
    """Where SageMaker trains and serves.

    ``role_arn``: the execution role SageMaker assumes (``arn:aws:iam::ACCOUNT:role/NAME``).
    ``image_uri``: the agentgpt image in ECR (``docs/cloud.md`` builds it). ``region``:
    None takes boto3's (``AWS_REGION``, the profile). Training: ``instance_type`` and
    ``instance_count``, ``output_path`` (``s3://`` prefix the model goes under),
    ``checkpoint_s3_uri`` (``s3://``, synced with ``/opt/ml/checkpoints``; a restarted
    job resumes from it), ``max_run_seconds``, ``use_spot`` with ``max_wait_seconds``
    (at least ``max_run_seconds``). Serving: ``endpoint_instance_type`` and
    ``endpoint_instance_count``. ``env_api_key_secret``: the Secrets Manager secret id
    (name or ARN) holding the env servers' API key, never the key itself. ``subnets`` and
    ``security_group_ids``: run in a VPC (both or neither). ``tags``: put on every
    resource created.
    """

    role_arn: str
    image_uri: str
    region: str | None = None
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1
    output_path: str | None = None
    checkpoint_s3_uri: str | None = None
    max_run_seconds: int = 3600
    use_spot: bool = False
    max_wait_seconds: int | None = None
    endpoint_instance_type: str = "ml.c5.large"
    endpoint_instance_count: int = 1
    env_api_key_secret: str | None = None
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Lists from YAML become tuples, so a config is hashable and cannot change.
        object.__setattr__(self, "subnets", tuple(self.subnets or ()))
        object.__setattr__(self, "security_group_ids", tuple(self.security_group_ids or ()))
        object.__setattr__(self, "tags", dict(self.tags or {}))
        _match(
            "role_arn", self.role_arn, _ROLE_ARN, "an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME"
        )
        _match(
            "image_uri",
            self.image_uri,
            _IMAGE_URI,
            "an image URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG",
        )
        if self.region is not None:
            _match("region", self.region, _REGION, "a region name such as us-east-1")
        for name in ("instance_type", "endpoint_instance_type"):
            _match(
                name,
                getattr(self, name),
                _INSTANCE_TYPE,
                "a SageMaker instance type such as ml.c5.xlarge",
            )
        for name in ("instance_count", "endpoint_instance_count"):
            _positive_int(name, getattr(self, name))
        for name in ("output_path", "checkpoint_s3_uri"):
            value = getattr(self, name)
            if value is not None:
                _s3(name, value)
        _positive_int("max_run_seconds", self.max_run_seconds)
        if self.max_run_seconds > _MAX_RUN_LIMIT:
            raise ConfigError(
                f"max_run_seconds: at most {_MAX_RUN_LIMIT} (28 days), got {self.max_run_seconds}"
            )
        if not isinstance(self.use_spot, bool):
            raise ConfigError(f"use_spot: expected true or false, got {self.use_spot!r}")
        if self.max_wait_seconds is not None:
            _positive_int("max_wait_seconds", self.max_wait_seconds)
            if not self.use_spot:
                raise ConfigError("max_wait_seconds: only used with use_spot: true")
            if self.max_wait_seconds < self.max_run_seconds:
                raise ConfigError(
                    f"max_wait_seconds ({self.max_wait_seconds}) is shorter than max_run_seconds"
                    f" ({self.max_run_seconds}); spot training waits at least as long as it runs"
                )
        if self.env_api_key_secret is not None:
            _match(
                "env_api_key_secret",
                self.env_api_key_secret,
                _SECRET_ID,
                "a Secrets Manager secret name or ARN (the key itself never goes in the config)",
            )
        for value in self.subnets:
            _match("subnets", value, _SUBNET, "subnet ids such as subnet-0abc1234")
        for value in self.security_group_ids:
            _match(
                "security_group_ids",
                value,
                _SECURITY_GROUP,
                "security group ids such as sg-0abc1234",
            )
        if bool(self.subnets) != bool(self.security_group_ids):
            raise ConfigError("subnets, security_group_ids: give both to run in a VPC, or neither")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not _TAG_KEY.match(key) or key.startswith("aws:"):
                raise ConfigError(f"tags: {key!r} is not a valid tag key")
            if not isinstance(value, str) or len(value) > 256:
                raise ConfigError(
                    f"tags: the value of {key!r} must be text of at most 256 characters"
                )

    # ------------------------------------------------------------------ forms
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SageMakerConfig:
        """From a mapping of field names; an unknown key is refused by name."""
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown SageMaker config field(s): {', '.join(unknown)}")
        missing = [name for name in ("role_arn", "image_uri") if data.get(name) is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SageMakerConfig:
        """Load a YAML mapping of field names; ``overrides`` (not None) win over the file."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must contain a mapping of SageMaker config fields")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["subnets"] = list(self.subnets)
        data["security_group_ids"] = list(self.security_group_ids)
        data["tags"] = dict(self.tags)
        return data

    def replace(self, **changes: Any) -> SageMakerConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ request parts
    def tag_list(self, extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """The tags in the form SageMaker requests take."""
        merged = {**self.tags, **(extra or {})}
        return [{"Key": k, "Value": v} for k, v in merged.items()]

    def vpc_config(self) -> dict[str, list[str]] | None:
        if not self.subnets:
            return None
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}


def _match(name: str, value: Any, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"{name}: expected {what}, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive whole number, got {value!r}")


def _s3(name: str, value: Any) -> None:
    if not isinstance(value, str) or not re.match(
        r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", value
    ):
        raise ConfigError(
            f"{name}: expected an s3:// path such as s3://my-bucket/agentgpt, got {value!r}"
        )


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> ``("bucket", "key/prefix")``."""
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")
