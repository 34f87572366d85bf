"""``agentgpt cloud``: training jobs and endpoints on SageMaker (docs/cloud.md).

Every command takes ``--config sagemaker.yaml`` (keys: ``SageMakerConfig``'s field
names) and otherwise uses boto3's standard configuration: profiles, ``AWS_REGION``,
``AWS_ENDPOINT_URL``. ``--dry-run`` prints the exact requests and sends nothing. boto3 is
imported inside the commands, so ``agentgpt --help`` works without the ``cloud`` extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentgpt.cli.extras import require

__all__ = ["register"]

app = typer.Typer(
    name="cloud",
    help="Train on SageMaker and serve the agent from a SageMaker endpoint (docs/cloud.md).",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="SageMaker config YAML (keys: role_arn, image_uri, region, instance_type, ...).",
        exists=True,
        dir_okay=False,
    ),
]
RegionOption = Annotated[
    str | None, typer.Option(help="AWS region (default: the config's, else boto3's).")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the exact requests without sending them.")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def _load_config(path: Path | None, region: str | None) -> Any:
    from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig

    if path is None:
        raise _fail("--config is required: a YAML file with at least role_arn and image_uri")
    try:
        return SageMakerConfig.from_yaml(path, region=region)
    except (ConfigError, TypeError, OSError) as exc:
        raise _fail(f"Bad SageMaker config {path}: {exc}") from None


def _region_of(path: Path | None, region: str | None) -> str | None:
    """The region for commands that only name a resource: --region, else the config's."""
    if region is not None or path is None:
        return region
    return _load_config(path, None).region


def _print_requests(calls: list[tuple[str, dict[str, Any]]]) -> None:
    for operation, request in calls:
        typer.echo(json.dumps({"operation": operation, "request": request}, indent=2, default=str))


def _errors() -> tuple[type[BaseException], ...]:
    from agentgpt.cloud.sagemaker.config import ConfigError
    from agentgpt.cloud.sagemaker.errors import SageMakerError

    return (SageMakerError, ConfigError, TimeoutError, FileNotFoundError)


def _parse_sets(values: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items read as the job's container reads its string map."""
    from agentgpt.cloud.sagemaker.hyperparameters import from_string_map
    from agentgpt.train.hyperparameters import Hyperparameters

    strings: dict[str, str] = {}
    for item in values:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        strings[key] = text
    try:
        fields, container = from_string_map(Hyperparameters, strings)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    if any(container[k] for k in ("env_urls", "env_api_key_secret", "fleet_timeout")):
        raise typer.BadParameter(
            "env_urls, env_api_key_secret and fleet_timeout are not hyperparameters: use"
            " --env-url, the config's env_api_key_secret, and --fleet-timeout",
            param_hint="--set",
        )
    return fields


@app.command("train")
def train_command(
    env_id: Annotated[str, typer.Argument(help="Gymnasium id to train on, e.g. CartPole-v1.")],
    config: ConfigOption = None,
    env_url: Annotated[
        list[str] | None,
        typer.Option(
            "--env-url",
            metavar="URL",
            help="An env server the job trains on (repeatable); none: envs inside the job."
            " The key comes from the config's env_api_key_secret.",
        ),
    ] = None,
    hyperparameters: Annotated[
        Path | None,
        typer.Option(
            "--hyperparameters",
            help="YAML file of hyperparameters (as for agentgpt train --config).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="A hyperparameter (repeatable)."),
    ] = None,
    fleet_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds every env server may be down before the job fails."),
    ] = None,
    job_name: Annotated[str | None, typer.Option(help="Job name (default: generated).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job's logs until it ends.")
    ] = False,
    region: RegionOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Start a SageMaker training job; the job name is the last line printed."""
    require("cloud train", "boto3")
    from agentgpt.cloud.sagemaker.jobs import TrainingJob, job_name_for, training_job_request
    from agentgpt.train.hyperparameters import Hyperparameters

    cfg = _load_config(config, region)
    fields = _parse_sets(set_ or [])
    fields["env_id"] = env_id
    try:
        if hyperparameters is not None:
            hparams = Hyperparameters.from_yaml(hyperparameters, **fields)
        else:
            hparams = Hyperparameters.from_dict(fields)
    except (ValueError, TypeError) as exc:
        raise _fail(f"Bad hyperparameters: {exc}") from None
    urls = list(env_url or [])
    name = job_name or job_name_for(env_id)
    try:
        if dry_run:
            request = training_job_request(
                cfg, hparams, name, env_urls=urls, fleet_timeout=fleet_timeout
            )
            _print_requests([("create_training_job", request)])
            typer.echo(name)
            return
        job = TrainingJob.start(
            cfg, hparams, env_urls=urls, job_name=name, fleet_timeout=fleet_timeout
        )
        if wait:
            _follow(job)
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(job.name)


def _follow(job: Any) -> None:
    for line in job.logs(follow=True):
        typer.echo(line)
    job.wait(progress=True, poll_seconds=5.0)


@app.command("status")
def status_command(
    job_name: Annotated[str, typer.Argument(help="Training job name.")],
    config: ConfigOption = None,
    region: RegionOption = None,
) -> None:
    """Show a training job's status, its failure reason and its model's S3 URI."""
    require("cloud status", "boto3")
    from agentgpt.cloud.sagemaker.jobs import TrainingJob

    try:
        answer = TrainingJob(job_name, region=_region_of(config, region)).describe()
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{job_name}: {answer['TrainingJobStatus']} ({answer.get('SecondaryStatus', '')})")
    if answer.get("FailureReason"):
        typer.echo(f"Failure reason: {answer['FailureReason']}")
    model = (answer.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if model:
        typer.echo(f"Model: {model}")


@app.command("logs")
def logs_command(
    job_name: Annotated[str, typer.Argument(help="Training job name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading until the job ends.")
    ] = False,
    config: ConfigOption = None,
    region: RegionOption = None,
) -> None:
    """Print a training job's logs from CloudWatch."""
    require("cloud logs", "boto3")
    from agentgpt.cloud.sagemaker.jobs import TrainingJob

    try:
        for line in TrainingJob(job_name, region=_region_of(config, region)).logs(follow=follow):
            typer.echo(line)
    except _errors() as exc:
        raise _fail(str(exc)) from None


@app.command("stop")
def stop_command(
    job_name: Annotated[str, typer.Argument(help="Training job name.")],
    config: ConfigOption = None,
    region: RegionOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Stop a training job (it saves a checkpoint first)."""
    require("cloud stop", "boto3")
    from agentgpt.cloud.sagemaker.jobs import TrainingJob

    if dry_run:
        _print_requests([("stop_training_job", {"TrainingJobName": job_name})])
        return
    try:
        TrainingJob(job_name, region=_region_of(config, region)).stop()
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Stopping {job_name}")


@app.command("deploy")
def deploy_command(
    model: Annotated[
        str,
        typer.Argument(help="A run directory (packed and uploaded) or an s3:// model.tar.gz."),
    ],
    endpoint: Annotated[str, typer.Option("--endpoint", help="Endpoint name.")],
    config: ConfigOption = None,
    region: RegionOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until InService.")] = True,
    dry_run: DryRunOption = False,
) -> None:
    """Deploy a trained agent as a real-time endpoint (an existing one is updated)."""
    require("cloud deploy", "boto3")
    from agentgpt.cloud.sagemaker.config import split_s3
    from agentgpt.cloud.sagemaker.endpoints import (
        check_name,
        deploy,
        deploy_requests,
        model_upload_uri,
        pack_model,
        upload_model,
    )

    cfg = _load_config(config, region)
    try:
        check_name(endpoint)
        is_s3 = model.startswith("s3://")
        if dry_run:
            calls: list[tuple[str, dict[str, Any]]] = []
            uri = model
            if not is_s3:
                uri = model_upload_uri(cfg, endpoint)
                bucket, key = split_s3(uri)
                size = len(pack_model(model))
                calls.append(
                    (
                        "put_object",
                        {
                            "Bucket": bucket,
                            "Key": key,
                            "Body": f"<model.tar.gz of {model}, {size} bytes>",
                        },
                    )
                )
            calls += deploy_requests(cfg, endpoint, uri)
            _print_requests(calls)
            typer.echo(
                "(an existing endpoint gets update_endpoint with the same EndpointConfigName)"
            )
            return
        uri = model if is_s3 else upload_model(cfg, model, endpoint)
        if not is_s3:
            typer.echo(f"Uploaded {model} to {uri}")
        answer = deploy(cfg, endpoint, uri, wait=wait)
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Endpoint {endpoint}: {answer['EndpointStatus']}")


@app.command("delete-endpoint")
def delete_endpoint_command(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    config: ConfigOption = None,
    region: RegionOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Delete an endpoint, its endpoint config and its models (billing stops)."""
    require("cloud delete-endpoint", "boto3")
    from agentgpt.cloud.sagemaker.endpoints import delete_endpoint

    if dry_run:
        _print_requests(
            [
                ("delete_endpoint", {"EndpointName": name}),
                ("delete_endpoint_config", {"EndpointConfigName": "<the endpoint's config>"}),
                ("delete_model", {"ModelName": "<each model of that config>"}),
            ]
        )
        return
    try:
        for item in delete_endpoint(name, region=_region_of(config, region)):
            typer.echo(f"Deleted {item}")
    except _errors() as exc:
        raise _fail(str(exc)) from None


@app.command("build-image")
def build_image_command(
    tag: Annotated[str, typer.Option(help="Image tag.")] = "latest",
    repository: Annotated[str, typer.Option(help="ECR repository (created if missing).")] = (
        "agentgpt-sagemaker"
    ),
    source: Annotated[
        Path | None,
        typer.Option(help="agentgpt source checkout (default: the one running).", file_okay=False),
    ] = None,
    config: ConfigOption = None,
    region: RegionOption = None,
) -> None:
    """Build the SageMaker image with docker and push it to ECR; print its URI."""
    require("cloud build-image", "boto3")
    from agentgpt.cli.extras import source_checkout
    from agentgpt.cloud.image import DockerUnavailable, ImageBuildError
    from agentgpt.cloud.sagemaker.image import build_image

    root = source or source_checkout()
    if root is None:
        raise _fail("not running from a source checkout: pass --source PATH of a clone")
    try:
        image = build_image(root, tag, repository=repository, region=_region_of(config, region))
    except (DockerUnavailable, ImageBuildError, *_errors()) as exc:
        raise _fail(str(exc)) from None
    typer.echo(image)


def register(parent: typer.Typer) -> None:
    """Add ``agentgpt cloud ...``."""
    parent.add_typer(app, name="cloud")


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
