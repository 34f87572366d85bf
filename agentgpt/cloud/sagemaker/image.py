"""``agentgpt cloud build-image``: build the SageMaker image and push it to ECR.

The image is built from a source checkout with ``deploy/sagemaker/Dockerfile`` by the
``docker`` command line (a Docker engine must answer), and pushed to an ECR repository
created on first use. The registry password comes from ECR through boto3 and reaches
``docker login`` on stdin, never on a command line.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agentgpt.cloud.image import DockerUnavailable, ImageBuildError, docker_available
from agentgpt.cloud.sagemaker.clients import aws_client
from agentgpt.cloud.sagemaker.errors import SageMakerError, explain

__all__ = ["DEFAULT_REPOSITORY", "DOCKERFILE", "build_commands", "build_image"]

DEFAULT_REPOSITORY = "agentgpt-sagemaker"
#: The Dockerfile, relative to the checkout's root (the build context).
DOCKERFILE = "deploy/sagemaker/Dockerfile"


def build_commands(
    source: Path, image: str, registry: str, docker: str = "docker"
) -> list[list[str]]:
    """The ``docker`` command lines, in order (the password goes to the first on stdin)."""
    return [
        [docker, "login", "--username", "AWS", "--password-stdin", registry],
        [docker, "build", "-f", str(source / DOCKERFILE), "-t", image, str(source)],
        [docker, "push", image],
    ]


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=7200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageBuildError(f"{argv[0]} {argv[1]} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise ImageBuildError(f"{argv[0]} {argv[1]} failed (exit {done.returncode}):\n{tail}")


def build_image(
    source: str | Path,
    tag: str,
    *,
    repository: str = DEFAULT_REPOSITORY,
    region: str | None = None,
    docker: str = "docker",
    ecr: Any = None,
) -> str:
    """Build the image from the checkout ``source`` and push it as ``repository:tag``;
    return its URI (the config's ``image_uri``)."""
    source = Path(source)
    if not (source / DOCKERFILE).is_file():
        raise ImageBuildError(f"{source} is not an agentgpt source checkout (no {DOCKERFILE})")
    if not docker_available(docker):
        raise DockerUnavailable(
            f"no Docker engine answers here ('{docker} info' failed); build and push where"
            " Docker runs (docs/cloud.md shows the commands)"
        )
    ecr = ecr if ecr is not None else aws_client("ecr", region)
    try:
        try:
            found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                raise
            found = ecr.create_repository(
                repositoryName=repository, imageScanningConfiguration={"scanOnPush": True}
            )["repository"]
        auth = ecr.get_authorization_token()["authorizationData"][0]
    except ClientError as exc:
        raise explain(exc, "preparing the ECR repository") from exc
    except BotoCoreError as exc:
        raise SageMakerError(f"preparing the ECR repository: {exc}") from exc
    _, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    registry = auth["proxyEndpoint"].removeprefix("https://")
    image = f"{found['repositoryUri']}:{tag}"
    login, build, push = build_commands(source, image, registry, docker)
    _run(login, stdin=password)
    _run(build)
    _run(push)
    return image
