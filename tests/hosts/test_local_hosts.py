"""``LocalEnvHosts``: real ``agentgpt env-server`` child processes on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from agentgpt.hosts import LocalEnvHosts

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

LANDMARKS = "agentgpt/Landmarks-v0"
LANDMARKS_FACTORY = "agentgpt.envs.landmarks:parallel_env"


# ----------------------------------------------------------------------------- helpers


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _children(parent: int) -> dict[int, str]:
    """Live (non-zombie) env-server processes whose parent is ``parent``: pid -> cmdline."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and "env-server" in cmdline:
            found[int(entry.name)] = cmdline
    return found


def _group_members(group: int) -> set[int]:
    """Live processes in process group ``group``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _host_pid(url: str) -> int:
    """The pid of this process's env-server child listening on ``url``'s port."""
    port = str(_port(url))
    (pid,) = [pid for pid, cmd in _children(os.getpid()).items() if port in cmd.split()]
    return pid


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _health(url: str) -> dict:
    response = httpx.get(f"{url}/health", timeout=5.0)
    assert response.status_code == 200
    return response.json()


def _make(url: str, env_name: str, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/make", json={"env_name": env_name}, headers=headers, timeout=30.0)


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=5.0)
    except httpx.ConnectError:
        return True
    return False


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[LocalEnvHosts]:
    """Two hosts: a shared registration on both, Landmarks under its own name on host 1."""
    hosts = LocalEnvHosts(
        2,
        register={"Shared/Landmarks-v0": LANDMARKS_FACTORY},
        host_register=[None, {LANDMARKS: LANDMARKS_FACTORY}],
    )
    with hosts:
        yield hosts


# ------------------------------------------------------------------------------- tests


def test_hosts_are_distinct_servers_that_require_the_key(two_hosts):
    first, second = two_hosts.urls
    assert first.startswith("http://127.0.0.1:") and second.startswith("http://127.0.0.1:")
    assert _port(first) != _port(second)
    assert _health(first)["incarnation"] != _health(second)["incarnation"]
    assert [two_hosts.is_running(i) for i in range(2)] == [True, True]

    for url in two_hosts.urls:
        assert _make(url, "CartPole-v1", None).status_code == 401
        assert _make(url, "CartPole-v1", "not-the-key").status_code == 401
        made = _make(url, "CartPole-v1", two_hosts.api_key)
        assert made.status_code == 200
        assert made.json()["action_space"]["n"] == 2


def test_key_stays_out_of_command_lines_and_logs(two_hosts):
    children = _children(os.getpid())
    ports = {str(_port(url)) for url in two_hosts.urls}
    ours = {pid: cmd for pid, cmd in children.items() if any(p in cmd.split() for p in ports)}
    assert len(ours) == 2
    for pid, cmdline in ours.items():
        assert two_hosts.api_key not in cmdline
        assert "--api-key" not in cmdline
        assert "--log-level warning" in cmdline
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"AGENTGPT_API_KEYS={two_hosts.api_key}".encode() in environ
    for index in range(2):
        assert two_hosts.api_key not in two_hosts.log_path(index).read_text()
    assert two_hosts.api_key not in repr(two_hosts)


def test_generated_keys_differ_and_given_key_is_used():
    made = [LocalEnvHosts(1), LocalEnvHosts(1), LocalEnvHosts(1, api_key="my-key")]
    try:
        assert made[0].api_key != made[1].api_key
        assert len(made[0].api_key) >= 32
        assert made[2].api_key == "my-key"
    finally:
        for hosts in made:
            hosts.close()


def test_registrations_reach_the_right_hosts(two_hosts):
    first, second = two_hosts.urls
    key = two_hosts.api_key
    for url in (first, second):
        shared = _make(url, "Shared/Landmarks-v0", key)
        assert shared.status_code == 200
        assert shared.json()["agents"] == ["agent_0", "agent_1"]

    own = _make(second, LANDMARKS, key)
    assert own.status_code == 200
    assert own.json()["agents"] == ["agent_0", "agent_1"]

    missing = _make(first, LANDMARKS, key)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "unknown_env"


def test_kill_then_restart_on_the_same_port(tmp_path):
    with LocalEnvHosts(2, log_dir=tmp_path) as hosts:
        urls = list(hosts.urls)
        before = [_health(url)["incarnation"] for url in urls]

        hosts.kill(0)
        assert not hosts.is_running(0)
        assert _refused(urls[0])
        assert hosts.is_running(1)
        assert _health(urls[1])["incarnation"] == before[1]

        hosts.restart(0)
        assert hosts.urls == urls
        assert hosts.is_running(0)
        after = _health(urls[0])["incarnation"]
        assert after != before[0]
        assert _make(urls[0], "CartPole-v1", hosts.api_key).status_code == 200
        assert _health(urls[1])["incarnation"] == before[1]

        # A running host is stopped before it starts again.
        hosts.restart(1)
        assert _health(urls[1])["incarnation"] != before[1]

    log = (tmp_path / "host-0.log").read_text()
    assert log.count(f"starting env host 0 on {urls[0]}") == 2
    assert log.count(f"listening on {urls[0]}") == 2
    assert (tmp_path / "host-1.log").exists()


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _serving_anew(url: str, old_incarnation: str) -> bool:
    try:
        return _health(url)["incarnation"] != old_incarnation
    except (httpx.HTTPError, AssertionError):
        return False


def test_supervised_hosts_come_back_after_a_crash_until_the_restart_limit(tmp_path, caplog):
    """A crashed child (SIGKILL from outside) is restarted on its port with its key; after
    ``max_restarts`` crashes in a row it is left down and the log says so."""
    caplog.set_level("INFO", logger="agentgpt.fleet")
    with LocalEnvHosts(
        2, log_dir=tmp_path, supervise=True, max_restarts=2, restart_backoff=(0.05, 0.1)
    ) as hosts:
        urls = list(hosts.urls)
        steady = _health(urls[1])["incarnation"]
        for crash in (1, 2):
            before = _health(urls[0])["incarnation"]
            os.kill(_host_pid(urls[0]), signal.SIGKILL)
            _wait_for(lambda before=before: _serving_anew(urls[0], before))
            assert hosts.urls == urls
            assert _make(urls[0], "CartPole-v1", hosts.api_key).status_code == 200
            assert _make(urls[0], "CartPole-v1", None).status_code == 401
            assert f"restart {crash} of at most 2" in caplog.text
        os.kill(_host_pid(urls[0]), signal.SIGKILL)
        _wait_for(lambda: "not restarting it" in caplog.text)
        time.sleep(0.5)
        assert _refused(urls[0]) and not hosts.is_running(0)
        assert _health(urls[1])["incarnation"] == steady  # the other host was left alone
    assert "crashed 3 times in a row" in caplog.text
    assert hosts.api_key not in caplog.text


def test_kill_takes_down_the_processes_a_host_started():
    with LocalEnvHosts(1) as hosts:
        (url,) = hosts.urls
        made = httpx.post(
            f"{url}/make_vec",
            json={"env_name": "CartPole-v1", "num_envs": 2, "vectorization_mode": "async"},
            headers={"Authorization": f"Bearer {hosts.api_key}"},
            timeout=60.0,
        )
        assert made.status_code == 200
        leader = _host_pid(url)
        members = _group_members(leader)
        assert leader in members and len(members) >= 3  # the server and its sub-env workers

        hosts.kill(0)
        assert _refused(url)  # the workers shared the listening socket; it is closed too
        end = time.monotonic() + 10.0
        while any(_alive(pid) for pid in members) and time.monotonic() < end:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in members)


def test_restart_from_a_short_lived_thread_survives_the_thread():
    with LocalEnvHosts(1) as hosts:
        (url,) = hosts.urls
        first = _health(url)["incarnation"]
        hosts.kill(0)
        worker = threading.Thread(target=hosts.restart, args=(0,))
        worker.start()
        worker.join()
        # The parent-death signal is tied to the thread that forked; this one is gone.
        time.sleep(0.5)
        assert hosts.is_running(0)
        assert _health(url)["incarnation"] != first


def test_close_stops_every_host_and_is_idempotent():
    hosts = LocalEnvHosts(2).start()
    urls = list(hosts.urls)
    ports = {str(_port(url)) for url in urls}
    pids = [
        pid for pid, cmd in _children(os.getpid()).items() if any(p in cmd.split() for p in ports)
    ]
    assert len(pids) == 2
    log_dir = hosts.log_path(0).parent
    assert log_dir.is_dir()

    hosts.close()
    assert not any(_alive(pid) for pid in pids)
    assert all(_refused(url) for url in urls)
    assert [hosts.is_running(i) for i in range(2)] == [False, False]
    assert not log_dir.exists()
    hosts.close()
    with pytest.raises(RuntimeError, match="closed"):
        hosts.start()
    with pytest.raises(RuntimeError, match="closed"):
        hosts.restart(0)


def test_port_taken_before_start_moves_the_host_to_another_port():
    hosts = LocalEnvHosts(1)
    taken = _port(hosts.urls[0])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with hosts:
            (url,) = hosts.urls
            assert _port(url) != taken
            assert _health(url)["status"] == "ok"
            assert "already in use" in hosts.log_path(0).read_text().lower()


def test_a_host_that_cannot_start_raises_with_its_log_and_stops_the_rest():
    hosts = LocalEnvHosts(2, host_register=[None, {"Broken-v0": "agentgpt_no_such_module:make"}])
    with pytest.raises(RuntimeError) as failure:
        hosts.start()
    message = str(failure.value)
    assert "env host 1" in message
    assert "agentgpt_no_such_module" in message  # the child's own explanation
    assert hosts.api_key not in message
    assert [hosts.is_running(i) for i in range(2)] == [False, False]
    assert _refused(hosts.urls[0])


def test_hosts_do_not_outlive_a_killed_parent(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from agentgpt.hosts import LocalEnvHosts
        hosts = LocalEnvHosts(1).start()
        print(hosts.urls[0], flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its log folder is never removed
    )
    try:
        url = parent.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        children = list(_children(parent.pid))
        assert len(children) == 1
        assert _health(url)["status"] == "ok"

        parent.send_signal(signal.SIGKILL)  # no atexit, no close(): only the kernel is left
        parent.wait()
        end = time.monotonic() + 30.0
        while _alive(children[0]) and time.monotonic() < end:
            time.sleep(0.05)
        assert not _alive(children[0])
        assert _refused(url)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 0}, "count"),
        ({"count": 1, "startup_timeout": 0}, "startup_timeout"),
        ({"count": 1, "host_register": [None, None]}, "host_register"),
        ({"count": 1, "register": {"a=b": "pkg:make"}}, "register"),
        ({"count": 1, "register": {"x": "no-colon"}}, "register"),
        ({"count": 2, "host_register": [None, {"x": "pkg"}]}, r"host_register\[1\]"),
        ({"count": 1, "api_key": "two,keys"}, "api_key"),
        ({"count": 1, "api_key": "has space"}, "api_key"),
        ({"count": 1, "max_restarts": -1}, "max_restarts"),
        ({"count": 1, "restart_backoff": (0.0, 1.0)}, "restart_backoff"),
        ({"count": 1, "restart_backoff": (2.0, 1.0)}, "restart_backoff"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(kwargs, match):
    count = kwargs.pop("count")
    with pytest.raises(ValueError, match=match):
        LocalEnvHosts(count, **kwargs)


def test_hosts_must_be_started_before_restart_and_indices_are_checked():
    hosts = LocalEnvHosts(2)
    try:
        with pytest.raises(RuntimeError, match="not started"):
            hosts.restart(0)
        assert not hosts.is_running(0)
        hosts.kill(1)  # nothing to kill yet: a no-op
        with pytest.raises(IndexError):
            hosts.is_running(2)
    finally:
        hosts.close()
