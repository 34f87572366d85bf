"""Env servers on this machine, as ``agentgpt env-server`` child processes.

Training over HTTP on one machine (``agentgpt train ENV --env-hosts N``), fault-tolerance
drills and benchmarks need real servers in separate processes: only then do env steps run
beside the learner instead of competing for its interpreter, and only then is a crash a real
crash (a dead process, a refused connection). :class:`LocalEnvHosts` starts them on free
loopback ports, waits until each answers, kills and restarts one on demand, and makes sure
none outlives the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import http.client
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agentgpt.hosts.provider import HostProvider
from agentgpt.protocol import routes
from agentgpt.protocol.keys import API_KEYS_ENV_VAR

__all__ = ["LocalEnvHosts"]

log = logging.getLogger("agentgpt.fleet")

_HOST = "127.0.0.1"
#: Attempts at a first start before giving up: a new port each time another process took one.
_START_ATTEMPTS = 4
#: How long ``restart`` waits for a dead host's port to become bindable again.
_PORT_REUSE_WAIT = 10.0
#: How long ``kill`` waits for the killed host's helpers to release its port.
_KILL_RELEASE_WAIT = 2.0
#: Seconds between SIGTERM and SIGKILL when stopping a host.
_STOP_GRACE = 5.0
_POLL_INTERVAL = 0.05
_HEALTH_TIMEOUT = 1.0
_LOG_TAIL_BYTES = 4000
#: A supervised host that served this long before it died starts its backoff afresh.
_STABLE_AFTER = 60.0
#: How often the supervisor looks for dead hosts.
_SUPERVISE_INTERVAL = 0.2
_ADDRESS_IN_USE = os.strerror(errno.EADDRINUSE)


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only).

    ``atexit`` does not run when the parent is killed or crashes; the kernel's parent-death
    signal covers that. ``prctl`` is looked up here, in the parent: loading libraries in a
    forked child of a threaded process can deadlock.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return set_pdeathsig


def _free_ports(count: int, exclude: Collection[int] = ()) -> list[int]:
    """``count`` distinct loopback ports nobody listens on now, none of them in ``exclude``.

    Each is the kernel's pick for port 0; the probe sockets stay open until all are picked,
    so the kernel cannot hand out the same port twice.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((_HOST, 0))
            port = sock.getsockname()[1]
            if port not in exclude:
                ports.append(port)
        return ports


def _port_bindable(port: int) -> bool:
    """Whether a server could listen on ``port`` now (with SO_REUSEADDR, as the server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _health_ok(port: int) -> bool:
    """Whether ``GET /health`` on ``port`` answers 200 within a short timeout."""
    conn = http.client.HTTPConnection(_HOST, port, timeout=_HEALTH_TIMEOUT)
    try:
        conn.request("GET", routes.HEALTH)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _check_registrations(register: Mapping[str, str], where: str) -> dict[str, str]:
    """Reject entries ``--register NAME=spec`` could not carry, before any child starts."""
    checked = {}
    for name, spec in register.items():
        if not isinstance(name, str) or not name.strip() or "=" in name:
            raise ValueError(f"{where}: env name {name!r} must be non-empty and have no '='")
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"{where}: {name!r} -> {spec!r} must be 'package.module:factory'")
        checked[name.strip()] = spec.strip()
    return checked


class _PortTaken(Exception):
    """The child could not listen because another socket holds its port."""


class _Host:
    """One child server: its fixed port, its log file and its current process."""

    def __init__(
        self,
        index: int,
        port: int,
        log_path: Path,
        register: dict[str, str],
        inline_envs: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.port = port
        self.log_path = log_path
        self.register = register
        self.inline_envs = list(inline_envs)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where the current process's output starts in the log
        self.started_at = 0.0  # monotonic time of the current process's start
        #: Supervision: crashes since it last ran for ``_STABLE_AFTER`` seconds, and
        #: whether the supervisor gave up on it.
        self.crashes = 0
        self.given_up = False

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "agentgpt", "env-server", "--host", _HOST]
        command += ["--port", str(self.port), "--log-level", "warning"]
        for name, spec in self.register.items():
            command += ["--register", f"{name}={spec}"]
        for name in self.inline_envs:
            command += ["--inline-env", name]
        return command

    def running(self) -> bool:
        """Whether the process is alive. Never reaps it, so its pid stays ours to signal."""
        process = self.process
        if process is None or process.returncode is not None:
            return False
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, process.pid, flags) is None
        except ChildProcessError:  # reaped already
            return False

    def log_tail(self) -> str:
        """The end of what the current process wrote, for error messages."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(self.log_offset, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", errors="replace").strip()
        except OSError:
            return ""

    def signal_group(self, signum: int) -> None:
        """Signal the child and anything it started (it leads its own process group).

        Only while the child is unreaped: until then its pid cannot name anyone else's group.
        """
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def terminate(self) -> None:
        """Ask the child to shut down cleanly (uvicorn closes every env on SIGTERM)."""
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the child to exit, then SIGKILL its group; reap.

        The group is SIGKILLed even after a clean exit, for helpers the server started
        (such as async vector env workers) and left behind.
        """
        if self.process is None or self.process.returncode is not None:
            return
        end = time.monotonic() + grace
        while self.running() and time.monotonic() < end:
            time.sleep(_POLL_INTERVAL)
        self.signal_group(signal.SIGKILL)
        self.process.wait()


class LocalEnvHosts(HostProvider):
    """N env servers on this machine, as child processes on free loopback ports.

    Each child runs ``agentgpt env-server`` on ``127.0.0.1`` with one API key (generated
    unless given) that reaches it through ``AGENTGPT_API_KEYS``, never the command line:
    process lists are world-readable. ``urls[i]`` never changes once :meth:`start` returns,
    so clients can reconnect to a host after :meth:`restart`.

    ``register`` maps NAME -> ``"package.module:factory"`` on every host;
    ``host_register[i]`` adds registrations on host ``i`` only (for example a slow variant
    of an env on one host); it may be shorter than ``count``. Child output goes to
    ``log_dir/host-<i>.log`` (appended to across restarts), or to a temporary folder that
    :meth:`close` removes. Children get SIGTERM if this process dies, and :meth:`close` runs
    at interpreter exit.

    With ``supervise``, a thread restarts a host whose process died (a crash, the OOM
    killer, :meth:`kill`) on the same port with the same key, after a backoff that starts
    at ``restart_backoff[0]`` seconds and doubles up to ``restart_backoff[1]``; a host that
    crashes ``max_restarts`` times in a row (each within a minute of its start) is left
    down, and the log says so. Clients of the fleet then find it back by themselves.
    ``inline_envs``: env names each host steps on its event loop (``--inline-env``).
    """

    def __init__(
        self,
        count: int,
        *,
        register: Mapping[str, str] | None = None,
        host_register: Sequence[Mapping[str, str] | None] | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 60.0,
        api_key: str | None = None,
        supervise: bool = False,
        max_restarts: int = 5,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
        inline_envs: Sequence[str] = (),
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, got {startup_timeout!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
        first_delay, max_delay = restart_backoff
        if not 0 < first_delay <= max_delay:
            raise ValueError(
                f"restart_backoff must be (first, most) with 0 < first <= most, got {restart_backoff!r}"
            )
        extra = list(host_register or [])
        if len(extra) > count:
            raise ValueError(f"host_register has {len(extra)} entries for {count} hosts")
        shared = _check_registrations(register or {}, "register")
        per_host = [
            {**shared, **_check_registrations(own or {}, f"host_register[{index}]")}
            for index, own in enumerate(extra + [None] * (count - len(extra)))
        ]
        if api_key is None:
            api_key = secrets.token_urlsafe(32)
        elif not api_key or any(ch.isspace() or ch == "," for ch in api_key):
            # AGENTGPT_API_KEYS is comma separated and the server strips whitespace.
            raise ValueError("api_key must be non-empty, without whitespace or commas")
        self.api_key: str = api_key
        self.startup_timeout = float(startup_timeout)

        self._temp_dir: Path | None = None
        if log_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="agentgpt-env-hosts-"))
            logs = self._temp_dir
        else:
            logs = Path(log_dir)
            logs.mkdir(parents=True, exist_ok=True)
        self._hosts = []
        for index, port in enumerate(_free_ports(count)):
            log_path = logs / f"host-{index}.log"
            self._hosts.append(_Host(index, port, log_path, per_host[index], inline_envs))
        self._lock = threading.RLock()
        # Children are started from one long-lived thread: the parent-death signal fires when
        # the *thread* that forked a child exits, so a short-lived caller thread must not fork.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgpt-hosts")
        self._preexec = _pdeathsig_setter()
        self._started = False
        self._closed = False
        self.max_restarts = max_restarts
        self.restart_backoff = (float(first_delay), float(max_delay))
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        if supervise:
            self._supervisor = threading.Thread(
                target=self._supervise, name="agentgpt-hosts-supervisor", daemon=True
            )
        atexit.register(self.close)  # stops the hosts, removes the temporary log folder

    # ------------------------------------------------------------------------ public API

    @property
    def urls(self) -> list[str]:
        """``http://127.0.0.1:PORT`` for each host, in host order."""
        return [host.url for host in self._hosts]

    def __len__(self) -> int:
        return len(self._hosts)

    def log_path(self, index: int) -> Path:
        """Where host ``index`` writes its output (removed by :meth:`close` unless log_dir)."""
        return self._host(index).log_path

    def start(self) -> LocalEnvHosts:
        """Start every host at once and return when all answer ``GET /health``.

        Raises RuntimeError (with the end of the failing host's log) if one exits or does
        not answer within ``startup_timeout``; the others are stopped then.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("these env hosts are closed; create new LocalEnvHosts")
            if self._started:
                raise RuntimeError("these env hosts are already started")
            self._started = True
            try:
                for host in self._hosts:
                    self._spawn(host)
                deadline = time.monotonic() + self.startup_timeout
                for host in self._hosts:
                    self._await_first_start(host, deadline)
            except BaseException:
                self.close()
                raise
            if self._supervisor is not None:
                self._supervisor.start()
        return self

    def kill(self, index: int) -> None:
        """SIGKILL host ``index`` and whatever it started, as a crash would.

        Returns as soon as the process is gone and its port is released (helpers forked
        by the server share its listening socket, and take a moment longer to die), so the
        port refuses connections from then on; nothing is restarted.
        """
        with self._lock:
            host = self._host(index)
            if host.process is None or host.process.returncode is not None:
                return
            host.reap(0.0)
            end = time.monotonic() + _KILL_RELEASE_WAIT
            while not _port_bindable(host.port) and time.monotonic() < end:
                time.sleep(_POLL_INTERVAL / 5)

    def restart(self, index: int) -> None:
        """Start host ``index`` again on the same port and wait until it answers.

        A host still running is stopped first (SIGTERM, then SIGKILL). Clients see a new
        ``incarnation`` in ``/health``: every env they held there is gone.
        """
        with self._lock:
            self._require_started()
            host = self._host(index)
            host.terminate()
            host.reap(_STOP_GRACE)
            deadline = time.monotonic() + self.startup_timeout
            port_deadline = time.monotonic() + _PORT_REUSE_WAIT
            while True:
                while not _port_bindable(host.port) and time.monotonic() < port_deadline:
                    time.sleep(_POLL_INTERVAL)
                self._spawn(host)
                try:
                    self._await_ready(host, deadline)
                    return
                except _PortTaken:
                    if time.monotonic() >= port_deadline:
                        raise RuntimeError(
                            f"env host {index} cannot listen on {host.url} again: another"
                            f" process holds port {host.port}"
                        ) from None

    def is_running(self, index: int) -> bool:
        """Whether host ``index``'s process is alive (not whether it answers yet)."""
        return self._host(index).running()

    def close(self) -> None:
        """Stop every host: SIGTERM, then SIGKILL after a grace period. Safe to call again."""
        self._stopping.set()  # first: a restart in progress stops waiting
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            for host in self._hosts:
                host.terminate()
            deadline = time.monotonic() + _STOP_GRACE
            for host in self._hosts:
                host.reap(max(0.0, deadline - time.monotonic()))
            self._spawner.shutdown(wait=True)
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "not started"
        return f"LocalEnvHosts({len(self._hosts)} hosts, {state}, urls={self.urls})"

    # ------------------------------------------------------------------------ internals

    def _host(self, index: int) -> _Host:
        if not 0 <= index < len(self._hosts):
            raise IndexError(f"no env host {index}: there are {len(self._hosts)}")
        return self._hosts[index]

    def _require_started(self) -> None:
        if self._closed:
            raise RuntimeError("these env hosts are closed")
        if not self._started:
            raise RuntimeError("these env hosts are not started; call start() first")

    def _spawn(self, host: _Host) -> None:
        """Start host's process (output appended to its log) from the spawner thread."""
        env = dict(os.environ)
        env[API_KEYS_ENV_VAR] = self.api_key
        env["PYTHONUNBUFFERED"] = "1"  # so a failing host's log shows why
        with host.log_path.open("ab") as log:
            log.write(f"# agentgpt: starting env host {host.index} on {host.url}\n".encode())
            log.flush()
            host.log_offset = log.tell()
            host.process = self._spawner.submit(
                subprocess.Popen,
                host.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: Ctrl-C reaches only this process, which then closes the
                # hosts in order, and kill() can take down helpers a host started.
                start_new_session=True,
                preexec_fn=self._preexec,
            ).result()
            host.started_at = time.monotonic()

    def _supervise(self) -> None:
        """Restart hosts whose process died, with backoff, until :meth:`close`."""
        while not self._stopping.wait(_SUPERVISE_INTERVAL):
            for host in self._hosts:
                if self._stopping.is_set():
                    return
                if host.given_up or host.process is None or host.running():
                    continue
                self._revive(host)

    def _revive(self, host: _Host) -> None:
        """Restart a dead host after its backoff, or give up on it after too many crashes."""
        assert host.process is not None
        host.reap(0.0)  # takes down helpers it left behind, while its pid is still ours
        code = host.process.returncode
        if time.monotonic() - host.started_at >= _STABLE_AFTER:
            host.crashes = 0
        host.crashes += 1
        if host.crashes > self.max_restarts:
            host.given_up = True
            log.error(
                "env host %d (%s) exited with code %s and crashed %d times in a row; not"
                " restarting it (its log: %s)",
                host.index,
                host.url,
                code,
                host.crashes,
                host.log_path,
            )
            return
        first, most = self.restart_backoff
        delay = min(most, first * 2.0 ** (host.crashes - 1))
        log.warning(
            "env host %d (%s) exited with code %s; restarting it in %.1f s (restart %d of"
            " at most %d in a row)",
            host.index,
            host.url,
            code,
            delay,
            host.crashes,
            self.max_restarts,
        )
        if self._stopping.wait(delay):
            return
        try:
            self.restart(host.index)
        except RuntimeError as exc:  # closed meanwhile, or it failed to start: try again
            if not self._stopping.is_set():
                log.warning("env host %d (%s) did not start again: %s", host.index, host.url, exc)
            return
        log.info("env host %d is serving again on %s", host.index, host.url)

    def _await_first_start(self, host: _Host, deadline: float) -> None:
        """Wait for ``host``; on a port conflict move it to another free port and retry."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._await_ready(host, deadline)
                return
            except _PortTaken:
                if attempt == _START_ATTEMPTS:
                    raise RuntimeError(
                        f"env host {host.index} found its port taken {attempt} times in a row;"
                        f" last log:\n{host.log_tail()}"
                    ) from None
                host.port = _free_ports(1, exclude={h.port for h in self._hosts})[0]
                self._spawn(host)

    def _await_ready(self, host: _Host, deadline: float) -> None:
        """Poll ``/health`` until 200; raise if the child exits or ``deadline`` passes."""
        assert host.process is not None
        while True:
            if not host.running():
                code = host.process.wait()
                tail = host.log_tail()
                if _ADDRESS_IN_USE in tail:
                    raise _PortTaken(host.port)
                raise RuntimeError(
                    f"env host {host.index} ({host.url}) exited with code {code} while"
                    f" starting; its log ({host.log_path}) ends with:\n{tail}"
                )
            if _health_ok(host.port) and host.running():
                return
            if self._stopping.is_set():
                host.reap(0.0)
                raise RuntimeError(f"env host {host.index} was closed while starting")
            if time.monotonic() >= deadline:
                host.reap(0.0)
                raise RuntimeError(
                    f"env host {host.index} ({host.url}) did not answer GET /health within"
                    f" {self.startup_timeout:g} s; its log ({host.log_path}) ends with:\n"
                    f"{host.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)
