"""``agentgpt hosts``: env servers in the cloud (AWS) and on Kubernetes.

``hosts up --cloud aws`` launches EC2 instances running an env server image,
``hosts list`` and ``hosts down NAME`` find them again by tag; ``hosts k8s`` writes
Kubernetes manifests. boto3 and the YAML writer are imported inside the commands.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from agentgpt.cli.envhost import parse_registrations
from agentgpt.cli.extras import require

__all__ = ["hosts_app", "register"]

hosts_app = typer.Typer(
    name="hosts",
    help="Env servers in the cloud (AWS EC2) and on Kubernetes (docs/hosting.md).",
    no_args_is_help=True,
)

_API_KEY_HELP = (
    "Key the servers require (prefer the AGENTGPT_API_KEY variable: command lines are"
    " visible to other users). Generated when neither is set."
)


@hosts_app.command("up")
def up_command(
    env: Annotated[str, typer.Option("--env", metavar="ENV_ID", help="The env to serve.")],
    allow_cidr: Annotated[
        str,
        typer.Option(
            metavar="CIDR",
            help="Who may reach the servers' port, e.g. your address as 203.0.113.7/32.",
        ),
    ],
    cloud: Annotated[str, typer.Option(help="Where to launch (aws).")] = "aws",
    count: Annotated[int, typer.Option(help="Number of env hosts.", min=1)] = 1,
    image: Annotated[
        str | None,
        typer.Option(
            metavar="URI",
            help="Image to run. Without it an image is built (Docker engine needed) and"
            " pushed to ECR.",
        ),
    ] = None,
    instance_type: Annotated[str, typer.Option(help="EC2 instance type.")] = "t3.medium",
    region: Annotated[
        str | None, typer.Option(help="AWS region (default: AWS_REGION / the profile's).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name of this group of hosts (default: from the env id)."),
    ] = None,
    port: Annotated[int, typer.Option(help="The env server's port.", min=1, max=65535)] = 8000,
    register_env: Annotated[
        list[str] | None,
        typer.Option(
            "--register", help="Serve an env from a factory: NAME=package.module:factory."
        ),
    ] = None,
    env_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-path", help="Env code (a module file or package folder) to put in the image."
        ),
    ] = None,
    requirements: Annotated[
        Path | None,
        typer.Option(help="pip requirements file of the env.", exists=True, dir_okay=False),
    ] = None,
    build_dir: Annotated[
        Path | None, typer.Option(help="Where to write the image's build context.")
    ] = None,
    agentgpt_wheel: Annotated[
        Path | None,
        typer.Option(
            help="Install agentgpt in the image from this wheel (default: this version from"
            " PyPI), e.g. one built from a checkout with 'pip wheel --no-deps .'.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    ami: Annotated[
        str | None, typer.Option(help="AMI id (default: the latest Amazon Linux 2023).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help=_API_KEY_HELP, envvar="AGENTGPT_API_KEY", show_envvar=False
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait until every server answers /health."),
    ] = True,
    wait_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for /health.", min=1)
    ] = 900.0,
) -> None:
    """Launch env hosts in the cloud and print the train command."""
    if cloud != "aws":
        raise typer.BadParameter(f"unknown cloud {cloud!r}: only aws", param_hint="--cloud")
    require("cloud", "boto3")
    from agentgpt.cli.launch import print_launch
    from agentgpt.cloud.aws import CloudError
    from agentgpt.cloud.image import DockerUnavailable, ImageBuildError
    from agentgpt.cloud.launcher import EnvLauncher

    try:
        hosts = EnvLauncher.launch_on_cloud(
            env,
            allow_cidr=allow_cidr,
            count=count,
            image=image,
            instance_type=instance_type,
            region=region,
            name=name,
            api_key=api_key,
            port=port,
            register=parse_registrations(list(register_env or [])),
            env_paths=list(env_path or []),
            requirements=requirements,
            build_dir=build_dir,
            agentgpt_wheel=agentgpt_wheel,
            ami=ami,
            wait=wait,
            wait_timeout=wait_timeout,
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"Cannot launch: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except (CloudError, DockerUnavailable, ImageBuildError) as exc:
        typer.echo(f"Cannot launch: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted: everything created so far was deleted.", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(
        f"Env hosts {hosts.name} in {hosts.region}: {', '.join(hosts.instance_ids)}", err=True
    )
    for url in hosts.urls:
        typer.echo(f"  {url}", err=True)
    if not wait:
        typer.echo("Not waiting for /health (--no-wait): the servers may need minutes.", err=True)
    print_launch(hosts, env, hosts.key_generated)
    typer.echo(
        f"The key is kept in SSM Parameter Store ({'/agentgpt/env-hosts/'}{hosts.name}/api-key)."
        f" Take the hosts down with: agentgpt hosts down {hosts.name}",
        err=True,
    )


@hosts_app.command("list")
def list_command(
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
) -> None:
    """List the groups of env hosts launched with 'hosts up'."""
    require("cloud", "boto3")
    from agentgpt.cloud.aws import CloudError, list_groups

    try:
        groups = list_groups(region)
    except CloudError as exc:
        typer.echo(f"Cannot list: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if not groups:
        typer.echo("No env hosts.", err=True)
        return
    for group in groups:
        typer.echo(f"{group.name}  ({group.region}, {len(group.instances)} instance(s))")
        for instance in group.instances:
            typer.echo(
                f"  {instance['id']}  {instance['state']:<10} {instance['type'] or ''}"
                f"  {instance['env_id'] or ''}  {instance['url'] or ''}"
            )


@hosts_app.command("down")
def down_command(
    name: Annotated[str, typer.Argument(help="The group of hosts (see 'hosts list').")],
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
) -> None:
    """Terminate a group's instances and delete its security group, key and role."""
    require("cloud", "boto3")
    from agentgpt.cloud.aws import CloudError, down

    try:
        done = down(name, region=region)
    except (CloudError, ValueError) as exc:
        typer.echo(f"Cannot take {name} down: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for line in done:
        typer.echo(line, err=True)
    typer.echo(f"{name}: nothing left" if done else f"{name}: nothing found", err=True)


@hosts_app.command("k8s")
def k8s_command(
    image: Annotated[str, typer.Option(metavar="URI", help="The env server image.")],
    env: Annotated[str, typer.Option("--env", metavar="ENV_ID", help="The env to serve.")],
    replicas: Annotated[int, typer.Option(help="Env server pods.", min=1)] = 1,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "default",
    name: Annotated[str, typer.Option(help="Name of the Deployment and Service.")] = (
        "agentgpt-envhost"
    ),
    port: Annotated[int, typer.Option(help="The env server's port.", min=1, max=65535)] = 8000,
    register_env: Annotated[
        list[str] | None,
        typer.Option(
            "--register", help="Serve an env from a factory: NAME=package.module:factory."
        ),
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU request per pod.")] = "1",
    memory: Annotated[str, typer.Option(help="Memory request per pod.")] = "1Gi",
    out: Annotated[
        Path | None,
        typer.Option(help="Write the manifests into this folder (default: print them)."),
    ] = None,
    secret: Annotated[
        bool,
        typer.Option(
            "--secret/--no-secret",
            help="Include the Secret with the API key (--no-secret: it is managed elsewhere).",
        ),
    ] = True,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help=_API_KEY_HELP, envvar="AGENTGPT_API_KEY", show_envvar=False
        ),
    ] = None,
) -> None:
    """Write Kubernetes manifests: Deployment, headless Service, Secret."""
    from agentgpt.cloud.kubernetes import K8sOptions, dns_target, render_manifests, to_yaml
    from agentgpt.hosts.launch import check_api_key, generate_api_key

    try:
        options = K8sOptions(
            image,
            env,
            replicas=replicas,
            namespace=namespace,
            name=name,
            port=port,
            register=parse_registrations(list(register_env or [])),
            cpu=cpu,
            memory=memory,
        )
        key = None
        if secret:
            key = check_api_key(api_key) if api_key else generate_api_key()
        docs = render_manifests(options, api_key=key, secret=secret)
    except ValueError as exc:
        typer.echo(f"Cannot write the manifests: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if out is None:
        sys.stdout.write(to_yaml(docs))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for doc in docs:
            path = out / f"{doc['kind'].lower()}.yaml"
            path.write_text(to_yaml([doc]))
            if doc["kind"] == "Secret":
                os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        typer.echo(f"Wrote {', '.join(d['kind'] for d in docs)} to {out}", err=True)
    if secret and not api_key:
        typer.echo(
            f"A key was generated into the Secret {options.secret_name}; read it with: kubectl"
            f" -n {namespace} get secret {options.secret_name} -o jsonpath='{{.data.api-key}}'"
            " | base64 -d",
            err=True,
        )
    typer.echo(
        f"Apply with kubectl apply -f; train from inside the cluster with AGENTGPT_API_KEY set:"
        f" agentgpt train {env} --env-hosts-dns {dns_target(options)}",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Add the ``hosts`` commands to the ``agentgpt`` CLI."""
    app.add_typer(hosts_app, name="hosts")
