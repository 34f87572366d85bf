"""Serving envs on every interface of this machine, with a required key.

No router answers UPnP here, so the UPnP test hands the launcher a stand-in for
``miniupnpc.UPnP`` and checks that the mapping is asked for and removed.
"""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from agentgpt.hosts.launch import check_api_key, launch_on_local_with_ip
from agentgpt.hosts.network import UpnpMapping, lan_address
from agentgpt.hosts.served import PortInUseError
from agentgpt.remote import RemoteEnv
from agentgpt.remote.errors import RemoteEnvError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def ip_service():
    """A local "what is my IP" service that answers a documentation address."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"203.0.113.7\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _FakeUpnp:
    def __init__(self) -> None:
        self.discoverdelay = 0
        self.lanaddr = "192.168.1.20"
        self.mappings: dict[tuple[int, str], tuple] = {}
        self.deleted: list[tuple[int, str]] = []

    def discover(self) -> int:
        return 1

    def selectigd(self) -> str:
        return "http://192.168.1.1:5000/ctl"

    def externalipaddress(self) -> str:
        return "198.51.100.9"

    def getspecificportmapping(self, port, proto):
        found = self.mappings.get((port, proto))
        return None if found is None else found[:2]

    def addportmapping(self, eport, proto, host, iport, desc, remote):
        self.mappings[eport, proto] = (host, iport, desc, remote)
        return True

    def deleteportmapping(self, eport, proto):
        self.deleted.append((eport, proto))
        return self.mappings.pop((eport, proto), None) is not None


def test_the_server_listens_everywhere_requires_a_generated_key_and_says_it_is_behind_nat(
    ip_service: str,
) -> None:
    port = _free_port()
    hosts = launch_on_local_with_ip("CartPole-v1", port=port, public_ip_service=ip_service)
    try:
        lan = lan_address()
        assert hosts.key_generated and len(hosts.api_key) >= 40
        assert hosts.details["lan_url"] == f"http://{lan}:{port}"
        assert hosts.details["public_url"] == f"http://203.0.113.7:{port}"
        assert hosts.details["behind_nat"] is True
        notes = "\n".join(hosts.notes)
        assert "behind NAT" in notes and "--tunnel localtunnel" in notes
        # Not reachable from the internet without a mapping: the trainer URL is the LAN one.
        assert hosts.urls == [f"http://{lan}:{port}"]
        assert hosts.api_key not in hosts.train_command() + notes

        # Listening on every interface: the LAN address answers, with the key only.
        env = RemoteEnv(f"http://{lan}:{port}", "CartPole-v1", api_key=hosts.api_key)
        env.reset(seed=0)
        env.close()
        with pytest.raises(RemoteEnvError):
            RemoteEnv(f"http://{lan}:{port}", "CartPole-v1").reset()
    finally:
        hosts.close()
    assert _refused(port)


def test_upnp_maps_the_port_and_removes_the_mapping_on_close() -> None:
    upnp = _FakeUpnp()
    port = _free_port()
    hosts = launch_on_local_with_ip(
        "CartPole-v1",
        port=port,
        api_key="a-key-of-enough-length",
        upnp=True,
        upnp_client=upnp,
        public_ip_service=None,
    )
    try:
        assert not hosts.key_generated and hosts.api_key == "a-key-of-enough-length"
        assert upnp.mappings[port, "TCP"][:2] == ("192.168.1.20", port)
        assert hosts.details["upnp"] is True
        assert hosts.urls == [f"http://198.51.100.9:{port}"]
        assert not any("behind NAT" in note for note in hosts.notes)
    finally:
        hosts.close()
    assert upnp.deleted == [(port, "TCP")] and not upnp.mappings
    assert _refused(port)


def test_a_router_mapping_held_by_another_machine_is_reported_not_taken() -> None:
    upnp = _FakeUpnp()
    upnp.mappings[8000, "TCP"] = ("192.168.1.99", 8000, "someone else", "")
    mapping = UpnpMapping(8000, upnp=upnp)
    with pytest.raises(RuntimeError, match="already forwards port 8000 to 192.168.1.99"):
        mapping.open()
    assert upnp.mappings[8000, "TCP"][0] == "192.168.1.99"


def test_a_port_in_use_is_a_clear_error_and_nothing_is_left_running() -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} is in use"):
            launch_on_local_with_ip("CartPole-v1", port=port, public_ip_service=None)


def test_weak_keys_are_refused() -> None:
    for bad in ("", "short", "has space in it here", "a,b,c,d,e,f,g,h,i"):
        with pytest.raises(ValueError):
            check_api_key(bad)


def test_ctrl_c_and_a_killed_launcher_leave_no_server_running(tmp_path) -> None:
    """The launcher's process is interrupted (SIGINT), then another one is killed outright
    (SIGKILL): in both cases the env server it started goes away."""
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from agentgpt.hosts.launch import launch_on_local_with_ip
            hosts = launch_on_local_with_ip(port=int(sys.argv[1]), public_ip_service=None)
            print("ready", flush=True)
            try:
                while True:
                    time.sleep(0.1)
            except KeyboardInterrupt:
                hosts.close()
                print("closed", flush=True)
            """
        )
    )
    for signum in (signal.SIGINT, signal.SIGKILL):
        port = _free_port()
        launcher = subprocess.Popen(
            [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert launcher.stdout is not None
            assert launcher.stdout.readline().strip() == "ready"
            assert not _refused(port)
            launcher.send_signal(signum)
            launcher.wait(30)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
        deadline = time.monotonic() + 15
        while not _refused(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _refused(port), f"the env server outlived its launcher ({signum!r})"
