"""The container image of an env server: a Docker build context, and building and pushing it.

The context holds a ``Dockerfile`` on a pinned Python base, ``agentgpt`` without torch
(the core install: env server and clients), the user's ``requirements.txt`` and env code
(a module or package copied into ``/app/env``, on ``PYTHONPATH``), and the env server as
entry point, with the user's registrations (``--register NAME=module:factory``) on its
command line. Building and pushing needs a Docker engine; where there is none, the context
is still written, to be built elsewhere.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentgpt._version import __version__

__all__ = [
    "BASE_IMAGE",
    "DockerUnavailable",
    "ImageBuildError",
    "docker_available",
    "entrypoint_command",
    "write_build_context",
]

#: The pinned base image (Debian bookworm, CPython 3.11).
BASE_IMAGE = "python:3.11.11-slim-bookworm"
#: Where the user's env code goes in the image (on PYTHONPATH).
ENV_DIR = "/app/env"
_UID = 10001


class DockerUnavailable(RuntimeError):
    """No Docker engine answers on this machine."""


class ImageBuildError(RuntimeError):
    """``docker build`` or ``docker push`` failed."""


def server_argv(port: int, register: Mapping[str, str]) -> list[str]:
    """The env server's arguments in the image (after ``agentgpt env-server``)."""
    argv = ["--host", "0.0.0.0", "--port", str(port)]
    for name, factory in register.items():
        argv += ["--register", f"{name}={factory}"]
    return argv


def write_build_context(
    directory: str | Path,
    *,
    register: Mapping[str, str] | None = None,
    env_paths: Sequence[str | Path] = (),
    requirements: str | Path | None = None,
    port: int = 8000,
    agentgpt_requirement: str | None = None,
    agentgpt_wheel: str | Path | None = None,
    base_image: str = BASE_IMAGE,
) -> Path:
    """Write a Docker build context for an env server into ``directory``; return it.

    ``register``: envs the server serves (``NAME -> "module:factory"``); Gymnasium ids
    registered by installed packages need none. ``env_paths``: files or package folders
    of the user's env code, copied into ``/app/env``. ``requirements``: a pip
    requirements file. ``agentgpt_requirement``: how to install agentgpt (default: this
    version from PyPI); ``agentgpt_wheel``: a wheel file to install instead.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / "env"
    env_dir.mkdir(exist_ok=True)
    for path in map(Path, env_paths):
        if not path.exists():
            raise FileNotFoundError(f"env code {path} does not exist")
        target = env_dir / path.name
        if path.is_dir():
            shutil.copytree(
                path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(path, target)
    (env_dir / ".keep").write_text("")
    req = root / "requirements.txt"
    if requirements is not None:
        shutil.copy2(requirements, req)
    else:
        req.write_text("# extra packages the env needs, one per line\n")
    install = agentgpt_requirement or f"agentgpt=={__version__}"
    wheel_line = ""
    if agentgpt_wheel is not None:
        wheel = Path(agentgpt_wheel)
        shutil.copy2(wheel, root / wheel.name)
        wheel_line = f"COPY {wheel.name} /tmp/{wheel.name}\n"
        install = f"/tmp/{wheel.name}"
    command = server_argv(port, dict(register or {}))
    dockerfile = f"""\
# An agentgpt env server. Built by `agentgpt hosts up` (or: docker build -t IMAGE .).
FROM {base_image}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH={ENV_DIR}
RUN useradd --create-home --uid {_UID} agentgpt
WORKDIR /app
{wheel_line}RUN pip install {shlex.quote(install)}
COPY requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt
COPY env/ {ENV_DIR}/
USER {_UID}
EXPOSE {port}
ENTRYPOINT ["agentgpt", "env-server"]
CMD {json.dumps(command)}
"""
    (root / "Dockerfile").write_text(dockerfile)
    (root / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return root


def entrypoint_command(dockerfile: str | Path) -> list[str]:
    """The command line a container of this Dockerfile runs (ENTRYPOINT + CMD)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for line in Path(dockerfile).read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            entrypoint = json.loads(line.removeprefix("ENTRYPOINT "))
        elif line.startswith("CMD "):
            cmd = json.loads(line.removeprefix("CMD "))
    return entrypoint + cmd


def docker_available(docker: str = "docker") -> bool:
    """Whether a Docker engine answers (``docker info`` succeeds)."""
    if shutil.which(docker) is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageBuildError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise ImageBuildError(f"{what} failed (exit {done.returncode}):\n{tail}")


def build_and_push(
    context: str | Path,
    image: str,
    *,
    registry: str,
    password: str,
    docker: str = "docker",
) -> None:
    """``docker login`` (password on stdin), ``docker build`` and ``docker push``."""
    if not docker_available(docker):
        raise DockerUnavailable(
            f"no Docker engine answers here ('{docker} info' failed), so the image cannot be"
            f" built. The build context is in {context}: build and push it where Docker"
            " runs, then pass --image URI."
        )
    _run(
        [docker, "login", "--username", "AWS", "--password-stdin", registry],
        "docker login",
        stdin=password,
    )
    _run([docker, "build", "-t", image, str(context)], "docker build")
    _run([docker, "push", image], "docker push")
