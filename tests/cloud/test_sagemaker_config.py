"""``SageMakerConfig`` validation and YAML, and the hyperparameter string map."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig
from agentgpt.cloud.sagemaker.hyperparameters import (
    CONTAINER_KEYS,
    METRIC_DEFINITIONS,
    from_string_map,
    metric_line,
    parse_metric_line,
    to_string_map,
)
from agentgpt.train.hyperparameters import Hyperparameters

ROLE = "arn:aws:iam::123456789012:role/agentgpt-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agentgpt-sagemaker:0.1"


def config(**changes) -> SageMakerConfig:
    fields = {"role_arn": ROLE, "image_uri": IMAGE, "output_path": "s3://bucket-a/out"}
    return SageMakerConfig(**{**fields, **changes})


def test_a_full_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sagemaker.yaml"
    path.write_text(
        f"""
role_arn: {ROLE}
image_uri: {IMAGE}
region: eu-west-1
instance_type: ml.c5.2xlarge
instance_count: 1
output_path: s3://my-bucket/agentgpt
checkpoint_s3_uri: s3://my-bucket/agentgpt/checkpoints
max_run_seconds: 7200
use_spot: true
max_wait_seconds: 10800
endpoint_instance_type: ml.c5.large
endpoint_instance_count: 2
env_api_key_secret: agentgpt/env-api-key
subnets: [subnet-0abc12345]
security_group_ids: [sg-0abc12345]
tags: {{team: rl}}
"""
    )
    cfg = SageMakerConfig.from_yaml(path)
    assert cfg.region == "eu-west-1" and cfg.max_wait_seconds == 10800
    assert cfg.subnets == ("subnet-0abc12345",)
    assert cfg.vpc_config() == {
        "Subnets": ["subnet-0abc12345"],
        "SecurityGroupIds": ["sg-0abc12345"],
    }
    assert cfg.tag_list() == [{"Key": "team", "Value": "rl"}]
    # The file's keys are exactly the field names.
    assert set(cfg.to_dict()) == set(SageMakerConfig.field_names())
    assert SageMakerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"role_arn": "arn:aws:iam::123:role/x"}, "role_arn"),
        ({"role_arn": "agentgpt-role"}, "role_arn"),
        ({"output_path": "/tmp/out"}, "output_path"),
        ({"output_path": "https://bucket/out"}, "output_path"),
        ({"checkpoint_s3_uri": "bucket/ckpt"}, "checkpoint_s3_uri"),
        ({"use_spot": True, "max_run_seconds": 3600, "max_wait_seconds": 1800}, "max_wait_seconds"),
        ({"max_wait_seconds": 7200}, "max_wait_seconds"),
        ({"instance_type": "c5.xlarge"}, "instance_type"),
        ({"instance_count": 0}, "instance_count"),
        ({"endpoint_instance_count": "2"}, "endpoint_instance_count"),
        ({"region": "Europe"}, "region"),
        ({"subnets": ["subnet-0abc12345"]}, "subnets"),
        ({"env_api_key_secret": "my key with spaces"}, "env_api_key_secret"),
        ({"tags": {"aws:reserved": "x"}}, "tags"),
    ],
)
def test_bad_values_fail_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}"):
        config(**changes)


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"role_arn: {ROLE}\nimage_uri: {IMAGE}\ninstance_typ: ml.c5.large\n")
    with pytest.raises(ConfigError, match="instance_typ"):
        SageMakerConfig.from_yaml(path)
    path.write_text(f"image_uri: {IMAGE}\n")
    with pytest.raises(ConfigError, match="role_arn"):
        SageMakerConfig.from_yaml(path)


def _non_default(field: dataclasses.Field, hint: typing.Any):
    """A value for ``field`` other than its default, of its type."""
    name = field.name
    special = {
        "env_id": "agentgpt/DictObs-v0",
        "env_kwargs": {"size": 3, "nested": {"a": [1, 2.5, None, True]}, "text": "x,y"},
        "vectorization_mode": "async",
        "run_name": "my run, with commas",
        "runs_dir": "/data/runs",
        "wandb_project": "proj",
        "num_layers": 3,
        "d_model": 96,
        "num_heads": 2,
        "max_input_states": 8,
        "num_input_states": 8,
        "train_window": 16,
        "window_stride": 8,
        "rollout_steps": 32,
        "learning_rate": 3.0e-4 / 7,
        "gamma": 0.9871234567891,
    }
    if name in special:
        return special[name]
    default = field.default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 3
    if isinstance(default, float):
        return default + 0.0123456789
    raise AssertionError(f"no test value for {name} ({hint})")


def test_every_hyperparameter_round_trips_through_the_string_map() -> None:
    hints = typing.get_type_hints(Hyperparameters)
    values = {f.name: _non_default(f, hints[f.name]) for f in dataclasses.fields(Hyperparameters)}
    hp = Hyperparameters(**values)
    for name in values:
        assert getattr(hp, name) != getattr(Hyperparameters(), name) or name == "env_kwargs", name
    strings = to_string_map(
        hp,
        env_urls=["http://a:8000", "https://b.example/x"],
        env_api_key_secret="agentgpt/key",
        fleet_timeout=30,
    )
    # SageMaker's map: every value a string, as hyperparameters.json holds it.
    assert all(isinstance(v, str) for v in strings.values())
    assert json.loads(json.dumps(strings)) == strings
    assert strings["learning_rate"] == repr(values["learning_rate"])
    assert strings["normalize_obs"] in ("true", "false")
    fields, container = from_string_map(Hyperparameters, strings)
    assert Hyperparameters(**fields) == hp
    assert container == {
        "env_urls": ["http://a:8000", "https://b.example/x"],
        "env_api_key_secret": "agentgpt/key",
        "fleet_timeout": 30.0,
    }


def test_defaults_round_trip_and_none_is_left_out() -> None:
    hp = Hyperparameters()
    strings = to_string_map(hp)
    assert "run_name" not in strings and "train_window" not in strings
    assert not set(CONTAINER_KEYS) & set(strings)
    fields, container = from_string_map(Hyperparameters, strings)
    assert Hyperparameters(**fields) == hp
    assert container["env_urls"] == [] and container["env_api_key_secret"] is None
    # Every optional field's default is None, so leaving None out loses nothing.
    for field in dataclasses.fields(Hyperparameters):
        hint = typing.get_type_hints(Hyperparameters)[field.name]
        if type(None) in typing.get_args(hint):
            assert field.default is None, field.name


def test_unknown_and_malformed_keys_are_named() -> None:
    with pytest.raises(ValueError, match="totl_steps"):
        from_string_map(Hyperparameters, {"totl_steps": "5"})
    with pytest.raises(ValueError, match="total_steps"):
        from_string_map(Hyperparameters, {"total_steps": "many"})
    with pytest.raises(ValueError, match="normalize_obs"):
        from_string_map(Hyperparameters, {"normalize_obs": "maybe"})
    with pytest.raises(ValueError, match="env_urls"):
        to_string_map(Hyperparameters(), env_urls=["http://a,b"])


def test_metric_lines_match_the_metric_definitions() -> None:
    row = {
        "update": 3,
        "global_step": 3072,
        "mean_return": 41.25,
        "policy_loss": -0.0123,
        "value_loss": 1.5e-5,
        "entropy": 0.69,
        "approx_kl": 0.001,
        "mean_length": "",
    }
    line = metric_line(row)
    found = parse_metric_line(line)
    assert found == {
        "train:global_step": 3072.0,
        "train:mean_return": 41.25,
        "train:policy_loss": -0.0123,
        "train:value_loss": 1.5e-5,
        "train:entropy": 0.69,
        "train:approx_kl": 0.001,
    }
    assert {d["Name"] for d in METRIC_DEFINITIONS} >= set(found)
    assert all(len(d["Regex"]) <= 500 for d in METRIC_DEFINITIONS)
