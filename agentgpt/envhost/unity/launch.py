"""Starting Unity instances: builds on disk or the Unity editor, one port each.

``UnityEnvironment`` (``mlagents_envs``) is the gRPC server a Unity player connects to, on
port ``base_port + worker_id``. Many instances on one host therefore need distinct worker
ids. :class:`WorkerIds` hands them out per server process (lowest free first) and, when a
port turns out to be taken by another process (another env server on the same host, or
anything else), moves on to the next id, so several servers share a host without
configuration. The editor listens on one fixed port and serves one env at a time.

:class:`UnityLauncher` is what the registry stores for ``--unity PATH`` and
``--unity-editor``: called with a ``/make`` request's kwargs it starts one instance and
returns a :class:`LaunchedUnity`, which the builder recognizes and serves through
:class:`~agentgpt.envhost.unity.adapter.UnityAdapter`.

``mlagents_envs`` is imported only when an instance starts, so the server runs, and
reports a clear error, without it.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgpt.envhost import errors
from agentgpt.envhost.unity.spaces import VISUAL_DTYPES

__all__ = [
    "BUILD_SUFFIXES",
    "DEFAULT_BASE_PORT",
    "EDITOR_PORT",
    "LaunchedUnity",
    "UnityLauncher",
    "UnityOptions",
    "WorkerIds",
    "check_build_path",
    "mlagents_missing_message",
]

logger = logging.getLogger("agentgpt.envhost.unity")

#: ML-Agents' defaults: builds from 5005 up, the editor on 5004.
DEFAULT_BASE_PORT = 5005
EDITOR_PORT = 5004
#: File endings of Unity player builds (Linux, Windows, macOS).
BUILD_SUFFIXES = (".x86_64", ".x86", ".exe", ".app")
#: How many worker ids are tried when ports are taken by other processes.
MAX_PORT_TRIES = 64

#: Engine-configuration fields a ``/make`` may set (``kwargs.engine``).
ENGINE_FIELDS = {
    "width": int,
    "height": int,
    "quality_level": int,
    "time_scale": float,
    "target_frame_rate": int,
    "capture_frame_rate": int,
}
#: The ``/make`` kwargs a Unity env accepts.
MAKE_KWARGS = ("engine", "parameters", "max_agents", "visual", "max_idle_steps")


def mlagents_missing_message() -> str:
    return (
        "serving Unity envs needs the mlagents-envs package, which is not installed here;"
        " install the server with pip install 'agentgpt[unity]' in its own virtualenv"
        " (see docs/unity.md)"
    )


def check_build_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute path to a runnable build; ``ValueError`` saying what is
    wrong otherwise."""
    build = Path(path).expanduser()
    if not build.exists():
        raise ValueError(f"the Unity build {str(path)!r} does not exist")
    if build.is_dir() and build.suffix.lower() != ".app":
        raise ValueError(
            f"the Unity build {str(path)!r} is a folder; name the player executable inside it"
            " (for example Build.x86_64 on Linux, Build.exe on Windows, Build.app on macOS)"
        )
    if build.is_file() and not os.access(build, os.X_OK):
        mode = build.stat().st_mode
        raise ValueError(
            f"the Unity build {str(path)!r} is not executable (mode"
            f" {stat.filemode(mode)}); run chmod +x on it"
        )
    return build.resolve()


def _port_is_free(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("localhost", port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class WorkerIds:
    """Worker ids of one server process: the lowest one not held here, skipping ports
    that another process holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[int, int]] = set()

    def acquire(self, base_port: int, skip: set[int] | None = None) -> int:
        """Reserve the lowest worker id whose port is free (``skip``: ids already found
        taken). Raises ``errors.too_many_envs`` when :data:`MAX_PORT_TRIES` ids are
        unusable."""
        skip = skip or set()
        with self._lock:
            for worker_id in range(min(MAX_PORT_TRIES, 65536 - base_port)):
                key = (base_port, worker_id)
                if key in self._held or worker_id in skip:
                    continue
                if not _port_is_free(base_port + worker_id):
                    skip.add(worker_id)
                    continue
                self._held.add(key)
                return worker_id
        raise errors.too_many_envs(
            f"no free port for another Unity instance in {base_port}-"
            f"{min(base_port + MAX_PORT_TRIES - 1, 65535)}; close envs or start the server with another"
            " --unity-base-port"
        )

    def hold(self, base_port: int, worker_id: int) -> str | None:
        """Reserve exactly ``worker_id``; why it cannot be had, or ``None`` once held."""
        key = (base_port, worker_id)
        with self._lock:
            if key in self._held:
                return "this server already uses it"
            if not _port_is_free(base_port + worker_id):
                return "another process holds it"
            self._held.add(key)
        return None

    def release(self, base_port: int, worker_id: int) -> None:
        with self._lock:
            self._held.discard((base_port, worker_id))


#: The worker ids of this process, shared by every launcher.
WORKER_IDS = WorkerIds()


@dataclass(frozen=True)
class UnityOptions:
    """How the adapter serves one instance (from the ``/make`` kwargs)."""

    #: Slots per behaviour: an int for every behaviour or a map behaviour name -> int;
    #: ``None``: twice the agents a behaviour has after the first reset.
    max_agents: int | Mapping[str, int] | None = None
    visual: str = "uint8"
    #: Unity steps without any agent asking for a decision before the env gives up.
    max_idle_steps: int = 10_000


def parse_options(kwargs: Mapping[str, Any]) -> tuple[UnityOptions, dict[str, Any], dict]:
    """The adapter options, engine configuration and environment parameters of a
    ``/make``'s kwargs; ``422 invalid_argument`` for anything else."""
    unknown = [key for key in kwargs if key not in MAKE_KWARGS]
    if unknown:
        raise errors.invalid_argument(
            f"kwargs {unknown} are not Unity options; a Unity env accepts {list(MAKE_KWARGS)}"
            " (see docs/unity.md)"
        )
    engine = kwargs.get("engine") or {}
    if not isinstance(engine, Mapping):
        raise errors.invalid_argument("kwargs.engine must be a map of engine settings")
    config: dict[str, Any] = {}
    for key, value in engine.items():
        kind = ENGINE_FIELDS.get(key)
        if kind is None:
            raise errors.invalid_argument(
                f"kwargs.engine.{key} is not an engine setting; use {list(ENGINE_FIELDS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.invalid_argument(f"kwargs.engine.{key} must be a number")
        if kind is int and value != int(value):
            raise errors.invalid_argument(f"kwargs.engine.{key} must be a whole number")
        config[key] = kind(value)
    if ("width" in config) != ("height" in config):
        raise errors.invalid_argument("kwargs.engine.width and height go together")
    parameters = kwargs.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise errors.invalid_argument("kwargs.parameters must be a map of names to numbers")
    floats: dict[str, float] = {}
    for key, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.invalid_argument(f"kwargs.parameters.{key} must be a number")
        if not key.isascii():
            raise errors.invalid_argument(f"kwargs.parameters.{key!r}: names must be ASCII")
        floats[str(key)] = float(value)
    max_agents = kwargs.get("max_agents")
    if max_agents is not None:
        entries = max_agents.values() if isinstance(max_agents, Mapping) else [max_agents]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in entries):
            raise errors.invalid_argument(
                "kwargs.max_agents must be a positive integer or a map of behaviour names to"
                " positive integers"
            )
    visual = kwargs.get("visual", "uint8")
    if visual not in VISUAL_DTYPES:
        raise errors.invalid_argument(f"kwargs.visual must be one of {list(VISUAL_DTYPES)}")
    idle = kwargs.get("max_idle_steps", UnityOptions.max_idle_steps)
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 1:
        raise errors.invalid_argument("kwargs.max_idle_steps must be a positive integer")
    options = UnityOptions(max_agents=max_agents, visual=visual, max_idle_steps=idle)
    return options, config, floats


@dataclass
class LaunchedUnity:
    """A running Unity instance and how to serve it: what a :class:`UnityLauncher`
    returns. ``close()`` stops the instance and frees its worker id."""

    env: Any
    options: UnityOptions = field(default_factory=UnityOptions)
    port: int | None = None
    _release: Any = None

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class UnityLauncher:
    """Starts a Unity build (``path``) or connects to the editor (``path=None``).

    The operator's settings: ``base_port`` (builds use ``base_port + worker_id``; the
    editor listens on ``base_port`` itself, 5004 by default), ``no_graphics``,
    ``timeout_wait`` (seconds to wait for Unity, at least 10), ``additional_args`` (command-line
    arguments of the build) and ``log_folder``. A request's kwargs choose only the
    options of :func:`parse_options`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        base_port: int | None = None,
        no_graphics: bool = False,
        timeout_wait: int = 60,
        additional_args: list[str] | tuple[str, ...] = (),
        log_folder: str | None = None,
        worker_ids: WorkerIds | None = None,
    ) -> None:
        self.path = None if path is None else check_build_path(path)
        self.editor = path is None
        default_port = EDITOR_PORT if self.editor else DEFAULT_BASE_PORT
        self.base_port = default_port if base_port is None else int(base_port)
        if not 1 <= self.base_port <= 65535:
            raise ValueError(f"base port {self.base_port} is not a port number")
        if timeout_wait < 10:
            # mlagents-envs checks on the process every tenth of this: below 10 it spins.
            raise ValueError(f"timeout_wait must be at least 10 seconds, got {timeout_wait}")
        self.no_graphics = no_graphics
        self.timeout_wait = int(timeout_wait)
        self.additional_args = list(additional_args)
        self.log_folder = log_folder
        self.worker_ids = worker_ids or WORKER_IDS

    def __repr__(self) -> str:
        where = "the Unity editor" if self.editor else str(self.path)
        return f"UnityLauncher({where}, base_port={self.base_port})"

    def __call__(self, **kwargs: Any) -> LaunchedUnity:
        return self.launch(kwargs)

    def launch(self, kwargs: Mapping[str, Any], seed: int | None = None) -> LaunchedUnity:
        """Start (or connect to) one instance with a ``/make``'s kwargs; ``seed`` is
        Unity's random seed (0 when ``None``)."""
        kwargs = {k: v for k, v in kwargs.items() if k != "render_mode"}  # Unity draws itself
        options, engine, parameters = parse_options(kwargs)
        try:
            from mlagents_envs.environment import UnityEnvironment  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(mlagents_missing_message()) from exc
        channels = self._side_channels(engine, parameters)
        if self.editor:
            return self._connect_editor(options, channels, seed or 0)
        return self._start_build(options, channels, seed or 0)

    def _side_channels(self, engine: dict[str, Any], parameters: dict[str, float]) -> list:
        from mlagents_envs.side_channel.engine_configuration_channel import (
            EngineConfigurationChannel,
        )
        from mlagents_envs.side_channel.environment_parameters_channel import (
            EnvironmentParametersChannel,
        )

        channels: list[Any] = []
        if engine:
            channel = EngineConfigurationChannel()
            channel.set_configuration_parameters(**engine)
            channels.append(channel)
        if parameters:
            channel = EnvironmentParametersChannel()
            for key, value in parameters.items():
                channel.set_float_parameter(key, value)
            channels.append(channel)
        return channels

    def _connect_editor(self, options: UnityOptions, channels: list, seed: int) -> LaunchedUnity:
        from mlagents_envs.environment import UnityEnvironment
        from mlagents_envs.exception import UnityWorkerInUseException

        why = self.worker_ids.hold(self.base_port, 0)
        if why is not None:
            raise errors.too_many_envs(
                f"the Unity editor's port {self.base_port} is in use ({why}): the editor serves"
                " one env at a time; close the other env first"
            )
        release = lambda: self.worker_ids.release(self.base_port, 0)  # noqa: E731
        try:
            logger.info("waiting for the Unity editor on port %d: press Play", self.base_port)
            env = UnityEnvironment(
                file_name=None,
                worker_id=0,
                base_port=self.base_port,
                seed=seed,
                timeout_wait=self.timeout_wait,
                side_channels=channels,
            )
        except UnityWorkerInUseException:
            release()
            raise errors.too_many_envs(
                f"port {self.base_port} (the Unity editor's) is in use by another process"
            ) from None
        except BaseException:
            release()
            raise
        return LaunchedUnity(env, options, self.base_port, release)

    def _start_build(self, options: UnityOptions, channels: list, seed: int) -> LaunchedUnity:
        from mlagents_envs.environment import UnityEnvironment
        from mlagents_envs.exception import UnityWorkerInUseException

        assert self.path is not None
        if not self.path.exists():
            raise FileNotFoundError(f"the Unity build {str(self.path)!r} no longer exists")
        taken: set[int] = set()
        for _ in range(MAX_PORT_TRIES):
            worker_id = self.worker_ids.acquire(self.base_port, taken)
            release = _releaser(self.worker_ids, self.base_port, worker_id)
            try:
                env = UnityEnvironment(
                    file_name=str(self.path),
                    worker_id=worker_id,
                    base_port=self.base_port,
                    seed=seed,
                    no_graphics=self.no_graphics,
                    timeout_wait=self.timeout_wait,
                    additional_args=list(self.additional_args),
                    side_channels=channels,
                    log_folder=self.log_folder,
                )
            except UnityWorkerInUseException:
                # Taken between the probe and the bind, by another process: next one.
                release()
                taken.add(worker_id)
                continue
            except BaseException:
                release()
                raise
            port = self.base_port + worker_id
            logger.info("started Unity build %s on port %d", self.path.name, port)
            return LaunchedUnity(env, options, port, release)
        raise errors.too_many_envs(
            f"no free port for another Unity instance from {self.base_port} on"
        )


def _releaser(worker_ids: WorkerIds, base_port: int, worker_id: int) -> Any:
    return lambda: worker_ids.release(base_port, worker_id)
