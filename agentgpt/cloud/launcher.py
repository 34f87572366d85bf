"""``EnvLauncher``: one API for serving envs to trainers elsewhere.

- :meth:`EnvLauncher.launch_on_local_with_ip`: this machine, on every interface (LAN or
  public address, optionally a UPnP router mapping).
- :meth:`EnvLauncher.launch_on_local_with_url`: this machine, behind a public https URL
  from a tunnel (ngrok or localtunnel).
- :meth:`EnvLauncher.launch_on_cloud`: N EC2 instances running the env server image
  (built and pushed to ECR when no image is given).

Each returns a handle with ``urls`` (what to give a trainer), ``api_key`` (required by the
servers; generated when none is given), ``train_command()`` (the ``agentgpt train`` line,
without the key: the trainer reads ``AGENTGPT_API_KEY``) and ``close()``, which undoes
everything the launch opened.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentgpt.hosts.launch import (
    API_KEY_ENV,
    LaunchedEnvHosts,
    check_api_key,
    generate_api_key,
    launch_on_local_with_ip,
    launch_on_local_with_url,
)

__all__ = ["EnvLauncher", "default_group_name", "push_image_to_ecr"]

log = logging.getLogger("agentgpt.cloud")

#: The ECR repository env server images are pushed to (one tag per group of hosts).
ECR_REPOSITORY = "agentgpt-env-server"


def default_group_name(env_id: str) -> str:
    """A name for a new group of env hosts: the env id as a DNS label, and a suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", env_id.lower()).strip("-")[:30] or "env"
    return f"{slug}-{secrets.token_hex(3)}"


def push_image_to_ecr(
    context: str | Path,
    tag: str,
    *,
    region: str | None = None,
    docker: str = "docker",
) -> str:
    """Build ``context`` and push it to ECR as ``agentgpt-env-server:TAG``; return its URI.

    The registry password comes from ECR through boto3 and reaches ``docker login`` on
    stdin. A repository created here is deleted again if the build or push fails.
    """
    from agentgpt.cloud.aws import _client_errors, _explain, _session
    from agentgpt.cloud.image import DockerUnavailable, build_and_push, docker_available

    if not docker_available(docker):
        raise DockerUnavailable(
            f"no Docker engine answers here ('{docker} info' failed), so the image cannot be"
            f" built. The build context is in {context}: build and push it where Docker"
            " runs, then pass --image URI."
        )
    session = _session(region)
    ecr = session.client("ecr")
    errors = _client_errors()
    created = False
    try:
        try:
            repository = ecr.describe_repositories(repositoryNames=[ECR_REPOSITORY])[
                "repositories"
            ][0]
        except errors as exc:
            if "RepositoryNotFound" not in str(exc):
                raise _explain(exc, "look up the ECR repository") from None
            repository = ecr.create_repository(
                repositoryName=ECR_REPOSITORY,
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": "agentgpt:env-hosts", "Value": "image"}],
            )["repository"]
            created = True
        auth = ecr.get_authorization_token()["authorizationData"][0]
    except errors as exc:
        raise _explain(exc, "prepare the ECR repository") from None
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    registry = auth["proxyEndpoint"].removeprefix("https://")
    image = f"{repository['repositoryUri']}:{tag}"
    try:
        build_and_push(context, image, registry=registry, password=password, docker=docker)
    except BaseException:
        if created:
            try:
                ecr.delete_repository(repositoryName=ECR_REPOSITORY, force=True)
            except errors as exc:
                log.warning("could not delete the ECR repository again: %s", exc)
        raise
    return image


class EnvLauncher:
    """Serve envs to trainers elsewhere; see the module doc."""

    @staticmethod
    def launch_on_local_with_ip(env_id: str | None = None, **options: Any) -> LaunchedEnvHosts:
        """See :func:`agentgpt.hosts.launch.launch_on_local_with_ip`."""
        return launch_on_local_with_ip(env_id, **options)

    @staticmethod
    def launch_on_local_with_url(env_id: str | None = None, **options: Any) -> LaunchedEnvHosts:
        """See :func:`agentgpt.hosts.launch.launch_on_local_with_url`."""
        return launch_on_local_with_url(env_id, **options)

    @staticmethod
    def launch_on_cloud(
        env_id: str,
        *,
        allow_cidr: str,
        count: int = 1,
        image: str | None = None,
        instance_type: str | None = None,
        region: str | None = None,
        name: str | None = None,
        api_key: str | None = None,
        port: int = 8000,
        register: Mapping[str, str] | None = None,
        env_paths: Sequence[str | Path] = (),
        requirements: str | Path | None = None,
        build_dir: str | Path | None = None,
        agentgpt_wheel: str | Path | None = None,
        ami: str | None = None,
        wait: bool = True,
        wait_timeout: float = 900.0,
    ) -> Any:
        """N EC2 instances serving ``env_id`` (AWS; the ``cloud`` extra).

        ``allow_cidr``: who may reach the servers' port (e.g. your address/32).
        ``image``: an image to run; without one, a build context is written (your
        ``register``-ed env code from ``env_paths``, ``requirements``) and built and pushed
        to ECR where a Docker engine runs. ``api_key``: by default ``AGENTGPT_API_KEY``,
        else generated; it is stored in SSM Parameter Store. Returns an
        :class:`~agentgpt.cloud.aws.AwsEnvHosts`; its ``close()`` is ``agentgpt hosts
        down NAME``.
        """
        from agentgpt.cloud import aws
        from agentgpt.cloud.image import server_argv, write_build_context

        name = aws.check_name(name or default_group_name(env_id))
        aws.check_cidr(allow_cidr)
        given = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        key = check_api_key(given) if given else generate_api_key()
        registrations = dict(register or {})
        if image is None:
            context = Path(build_dir or tempfile.mkdtemp(prefix=f"agentgpt-image-{name}-"))
            write_build_context(
                context,
                register=registrations,
                env_paths=env_paths,
                requirements=requirements,
                port=port,
                agentgpt_wheel=agentgpt_wheel,
            )
            image = push_image_to_ecr(context, name, region=region)
        # The registrations after --host/--port, which user-data passes itself.
        server_args = server_argv(port, registrations)[4:]
        return aws.up(
            name=name,
            env_id=env_id,
            count=count,
            allow_cidr=allow_cidr,
            image=image,
            api_key=key,
            instance_type=instance_type or aws.DEFAULT_INSTANCE_TYPE,
            region=region,
            port=port,
            ami=ami,
            server_args=server_args,
            wait=wait,
            wait_timeout=wait_timeout,
            key_generated=not given,
        )
