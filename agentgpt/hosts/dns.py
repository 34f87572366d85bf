"""Env servers found through DNS: every address a name resolves to is one env host.

A Kubernetes headless Service (``clusterIP: None``) answers its name with the address of
every ready pod behind it. :class:`DnsHosts` turns ``NAME:PORT`` into that many env hosts
("host slots"), and keeps each slot on a live pod: whenever the fleet opens a new
connection to a slot (after its pod went down, when probing it), the name is resolved
again; a slot whose address is gone moves to an address no other slot holds (a pod that
replaced it, or one added by scaling up). Slots that find no free address wait, as down
hosts, until one appears; so ``count`` slots more than there are pods today fill up as
the Deployment scales up.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from agentgpt.hosts.provider import HostProvider
from agentgpt.remote.errors import UnavailableError

__all__ = ["DnsHosts", "parse_dns_target"]

log = logging.getLogger("agentgpt.fleet")

Resolver = Callable[[str, int], Sequence[str]]


def parse_dns_target(target: str) -> tuple[str, int]:
    """``"NAME:PORT"`` as (name, port); ``ValueError`` otherwise."""
    name, sep, port = target.strip().rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{target!r} must look like NAME:PORT, e.g. envhost.default:8000")
    return name.strip("[]"), int(port)


def resolve_addresses(name: str, port: int) -> list[str]:
    """Every address ``name`` resolves to (IPv4 and IPv6), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


class DnsHosts(HostProvider):
    """The env servers behind a DNS name, one host slot per address.

    ``count``: host slots (default: as many as the name has addresses at :meth:`start`).
    ``resolver(name, port)`` returns the addresses (default: the system resolver).
    ``min_interval``: the name is resolved at most this often. ``scheme``: ``http`` or
    ``https``.
    """

    def __init__(
        self,
        name: str,
        port: int,
        *,
        api_key: str | None = None,
        count: int | None = None,
        resolver: Resolver | None = None,
        min_interval: float = 1.0,
        scheme: str = "http",
    ) -> None:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {scheme!r}")
        self.name = name
        self.port = int(port)
        self.api_key = api_key
        self.scheme = scheme
        self._count = count
        self._resolver = resolver or resolve_addresses
        self.min_interval = float(min_interval)
        self._lock = threading.Lock()
        self._addresses: list[str] = []
        self._resolved_at = float("-inf")
        self._slots: list[str | None] = []

    # ------------------------------------------------------------------ provider

    @property
    def urls(self) -> list[str]:
        """One name per host slot (``http://NAME:PORT#pod-I``); connections go to the
        slot's current address, see :attr:`locators`."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return [f"{self.scheme}://{host}:{self.port}#pod-{i}" for i in range(len(self._slots))]

    @property
    def locators(self) -> list[Callable[[], str]]:
        """Per host slot: the URL to connect to now (resolving the name again if due)."""
        return [lambda slot=slot: self.locate(slot) for slot in range(len(self._slots))]

    def start(self) -> DnsHosts:
        if self._slots:
            return self
        with self._lock:
            self._refresh(force=True)
            if not self._addresses:
                raise RuntimeError(
                    f"{self.name} resolves to no address: is the Service there, and is any"
                    " pod ready?"
                )
            count = self._count or len(self._addresses)
            self._slots = [
                self._addresses[i] if i < len(self._addresses) else None for i in range(count)
            ]
        log.info(
            "%s:%d resolves to %d address(es); %d env host slot(s)",
            self.name,
            self.port,
            len(self._addresses),
            len(self._slots),
        )
        return self

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ slots

    def addresses(self) -> list[str]:
        """The slots' current addresses (None: waiting for one)."""
        with self._lock:
            return list(self._slots)  # type: ignore[arg-type]

    def locate(self, slot: int) -> str:
        """The URL of ``slot``'s server now; :class:`UnavailableError` while it has none."""
        with self._lock:
            self._refresh()
            current = self._slots[slot]
            if current is None or current not in self._addresses:
                taken = {address for address in self._slots if address is not None}
                free = [address for address in self._addresses if address not in taken]
                if free:
                    log.info(
                        "env host slot %d of %s: %s -> %s",
                        slot,
                        self.name,
                        current or "(none)",
                        free[0],
                    )
                    current = self._slots[slot] = free[0]
            if current is None:
                raise UnavailableError(
                    None, "unavailable", f"{self.name} has no address for env host slot {slot}"
                )
            host = f"[{current}]" if ":" in current else current
            return f"{self.scheme}://{host}:{self.port}"

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._resolved_at < self.min_interval:
            return
        self._resolved_at = now
        found = list(self._resolver(self.name, self.port))
        if found != self._addresses:
            log.info("%s now resolves to %s", self.name, ", ".join(found) or "nothing")
        self._addresses = found

    def __repr__(self) -> str:
        return f"DnsHosts({self.name}:{self.port}, slots={self._slots})"
