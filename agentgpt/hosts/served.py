"""One ``agentgpt env-server`` child process on a chosen address and port.

The launchers (:mod:`agentgpt.hosts.launch`) serve envs to other machines: on every
interface, or on loopback behind a tunnel. Unlike :class:`~agentgpt.hosts.local.LocalEnvHosts`
(many children on free loopback ports, supervised), this is one server on a port the user
picked, and a port someone else holds is an error the user must hear about, not a reason
to move elsewhere: the port is what the router mapping, the firewall rule or the tunnel
points at.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentgpt.hosts.local import _pdeathsig_setter
from agentgpt.protocol import routes
from agentgpt.protocol.keys import API_KEYS_ENV_VAR

__all__ = ["PortInUseError", "ServedEnvServer", "port_in_use"]

_POLL_INTERVAL = 0.05
_STOP_GRACE = 5.0
_LOG_TAIL_BYTES = 4000


class PortInUseError(RuntimeError):
    """Another process listens on the port the env server was asked to use."""


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now (SO_REUSEADDR, as uvicorn)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServedEnvServer:
    """``agentgpt env-server --host HOST --port PORT`` as a child that dies with its parent.

    The key reaches the child through ``AGENTGPT_API_KEYS``, never its command line
    (process lists are world-readable). ``register`` maps NAME -> ``"module:factory"``;
    ``server_args`` are further ``env-server`` options. ``start()`` returns when the
    server answers ``GET /health``; ``close()`` stops it (SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        host: str,
        port: int,
        api_key: str,
        *,
        register: Mapping[str, str] | None = None,
        server_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
        log_path: str | Path | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an env server reachable from other machines needs an API key")
        if not 0 < int(port) < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        self.host = host
        self.port = int(port)
        self._api_key = api_key
        self._register = dict(register or {})
        self._server_args = [str(arg) for arg in server_args]
        #: Whether it serves HTTPS (``--tls-cert`` among the options).
        self.tls = "--tls-cert" in self._server_args
        self.startup_timeout = float(startup_timeout)
        self._temp_dir: Path | None = None
        if log_path is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="agentgpt-env-server-"))
            self.log_path = self._temp_dir / "env-server.log"
        else:
            self.log_path = Path(log_path)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    @property
    def local_url(self) -> str:
        """The URL this machine reaches the server at."""
        return f"{self.scheme}://{self._reach}:{self.port}"

    @property
    def _reach(self) -> str:
        """The address this machine reaches the server at."""
        if self.host in ("0.0.0.0", "", "::", "[::]"):
            return "127.0.0.1"
        return self.host

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "agentgpt", "env-server", "--host", self.host]
        command += ["--port", str(self.port)]
        for name, spec in self._register.items():
            command += ["--register", f"{name}={spec}"]
        return command + self._server_args

    def start(self) -> ServedEnvServer:
        if self._closed:
            raise RuntimeError("this env server is closed; create a new one")
        if self._process is not None:
            raise RuntimeError("this env server is already started")
        if port_in_use(self.host, self.port):
            raise PortInUseError(
                f"port {self.port} is in use on {self.host}: another program listens there."
                " Stop it or pick another port (--port)."
            )
        env = dict(os.environ)
        env[API_KEYS_ENV_VAR] = self._api_key
        env["PYTHONUNBUFFERED"] = "1"
        atexit.register(self.close)
        try:
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches only the parent, which closes us
                    preexec_fn=_pdeathsig_setter(),
                )
            self._await_ready()
        except BaseException:
            self.close()
            raise
        return self

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", errors="replace").strip()
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server and remove its temporary log. Safe to call again."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_GRACE)
        if process is not None:
            # The group too: helpers the server started (async vector env workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def _await_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                tail = self.log_tail()
                if os.strerror(errno.EADDRINUSE) in tail:
                    raise PortInUseError(
                        f"port {self.port} is in use on {self.host}: another program listens"
                        " there. Stop it or pick another port (--port)."
                    )
                raise RuntimeError(
                    f"the env server exited with code {self._process.returncode} while"
                    f" starting; its output ends with:\n{tail}"
                )
            if _health_ok(self._reach, self.port, self.tls):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the env server did not answer GET /health within"
                    f" {self.startup_timeout:g} s; its output ends with:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def __enter__(self) -> ServedEnvServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _health_ok(host: str, port: int, tls: bool = False) -> bool:
    if tls:
        # Only whether it answers: the certificate names the public host, not loopback.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=1.0, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", routes.HEALTH)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
