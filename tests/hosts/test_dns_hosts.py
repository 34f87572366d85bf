"""Env hosts found through DNS (``--env-hosts-dns NAME:PORT``), as behind a headless Service.

The resolver is replaced by one that answers the loopback addresses (127.0.0.x, all on
one port, as pods of one Service are) of real env servers started by the test; the test
changes its answer as a Deployment would: a pod replaced, a replica added.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from agentgpt.hosts.dns import DnsHosts, parse_dns_target
from agentgpt.hosts.fleet import FleetOptions, host_provider, open_fleet
from agentgpt.hosts.served import ServedEnvServer
from agentgpt.remote.errors import UnavailableError

KEY = "dns-test-key-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Pods:
    """Env servers on 127.0.0.N:port, and the DNS answer naming them."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.servers: dict[str, ServedEnvServer] = {}
        self.answer: list[str] = []

    def add(self, address: str) -> None:
        server = ServedEnvServer(address, self.port, KEY, server_args=["--log-level", "warning"])
        self.servers[address] = server.start()
        self.answer.append(address)

    def remove(self, address: str) -> None:
        self.answer.remove(address)
        self.servers.pop(address).close()

    def resolve(self, name: str, port: int) -> list[str]:
        assert (name, port) == ("envhost.agents.svc.cluster.local", self.port)
        return list(self.answer)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@pytest.fixture
def pods(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Pods]:
    found = _Pods()
    monkeypatch.setattr("agentgpt.hosts.dns.resolve_addresses", found.resolve)
    try:
        yield found
    finally:
        found.close()


def _step_until(fleet, done, limit: float = 60.0) -> None:
    """Step the fleet (answering every row) until ``done()``; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"fleet hosts: {fleet.hosts}"
        batch = fleet.recv(timeout=1.0)
        wanted = ~batch.cut
        if wanted.any():
            fleet.send(np.zeros(int(wanted.sum()), dtype=np.int64), batch.env_ids[wanted])


def test_parse_dns_target() -> None:
    assert parse_dns_target("envhost.ns.svc.cluster.local:8000") == (
        "envhost.ns.svc.cluster.local",
        8000,
    )
    for bad in ("envhost", "envhost:", ":8000", "envhost:http", "envhost:70000"):
        with pytest.raises(ValueError, match="NAME:PORT"):
            parse_dns_target(bad)


def test_slots_follow_the_names_addresses() -> None:
    answer = ["10.0.0.1", "10.0.0.2"]
    hosts = DnsHosts("svc", 8000, count=3, resolver=lambda n, p: list(answer), min_interval=0)
    hosts.start()
    assert hosts.urls == [f"http://svc:8000#pod-{i}" for i in range(3)]
    first, second, third = hosts.locators
    assert first() == "http://10.0.0.1:8000" and second() == "http://10.0.0.2:8000"
    with pytest.raises(UnavailableError, match="no address for env host slot 2"):
        third()
    answer[:] = ["10.0.0.2", "10.0.0.9", "10.0.0.3"]  # pod 1 replaced, one more replica
    assert first() == "http://10.0.0.9:8000"
    assert second() == "http://10.0.0.2:8000"
    assert third() == "http://10.0.0.3:8000"
    with pytest.raises(RuntimeError, match="resolves to no address"):
        DnsHosts("svc", 8000, resolver=lambda n, p: []).start()


def test_the_fleet_finds_pods_through_dns_and_follows_replacements_and_scale_up(
    pods: _Pods,
) -> None:
    pods.add("127.0.0.2")
    pods.add("127.0.0.3")
    options = FleetOptions(
        env_hosts_dns=f"envhost.agents.svc.cluster.local:{pods.port}",
        env_hosts=3,  # one slot more than there are pods: it fills when one is added
        api_key=KEY,
        fleet_timeout=60.0,
        step_timeout=5.0,
    )
    provider = host_provider(options)
    assert isinstance(provider, DnsHosts)
    with open_fleet("CartPole-v1", options, num_envs=6, seed=0) as fleet:
        assert fleet.num_envs == 6
        assert [status.up for status in fleet.hosts] == [True, True, False]
        fleet.async_reset(seed=0)

        # Scale up: a third pod appears and the waiting slot takes it.
        pods.add("127.0.0.4")
        _step_until(fleet, lambda: fleet.hosts[2].up)

        # A pod goes down and is replaced by one at another address: its slot moves.
        pods.remove("127.0.0.3")
        _step_until(fleet, lambda: not fleet.hosts[1].up)
        pods.add("127.0.0.5")
        _step_until(fleet, lambda: fleet.hosts[1].up)
        assert all(status.up for status in fleet.hosts)
        assert fleet.hosts[1].times_down == 1
