"""Where this machine can be reached: its LAN address, its public address, a router mapping.

An env server on all interfaces is reachable from the LAN at once; from the internet only
if the machine's own address is public, or the router forwards the port to it. The
public address is asked of a "what is my IP" service (plain HTTPS, a short timeout);
the mapping is made with UPnP through ``miniupnpc`` (the ``upnp`` extra) and removed on
close. Nothing here fails hard: what cannot be found is reported as unknown.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import socket
import urllib.request
from typing import Any

__all__ = [
    "DEFAULT_PUBLIC_IP_SERVICE",
    "UpnpError",
    "UpnpMapping",
    "is_public",
    "lan_address",
    "public_address",
]

log = logging.getLogger("agentgpt.hosts")

#: Answers a GET with the caller's public IPv4 address as plain text.
DEFAULT_PUBLIC_IP_SERVICE = "https://checkip.amazonaws.com"


def lan_address() -> str:
    """The address this machine's outgoing traffic leaves from (its LAN address).

    A UDP socket "connected" to a documentation address sends nothing; the kernel only
    picks the interface that would route it. Loopback when there is no route at all.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed on the internet
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def public_address(
    service: str | None = DEFAULT_PUBLIC_IP_SERVICE, timeout: float = 3.0
) -> str | None:
    """This network's public IPv4 address as ``service`` sees it, or None if unknown."""
    if not service:
        return None
    try:
        with urllib.request.urlopen(service, timeout=timeout) as answer:  # noqa: S310
            text = answer.read(64).decode("ascii", errors="replace").strip()
        return str(ipaddress.ip_address(text))
    except (OSError, ValueError) as exc:
        log.debug("public address lookup at %s failed: %s", service, exc)
        return None


def is_public(address: str) -> bool:
    """Whether ``address`` is a global (internet-routable) address."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


class UpnpError(RuntimeError):
    """No UPnP router answered, or it refused the mapping."""


class UpnpMapping:
    """A TCP port mapping on the router (UPnP IGD), removed by :meth:`close`.

    ``upnp`` is a ``miniupnpc.UPnP`` object; one is made when it is None (the ``upnp``
    extra). The mapping forwards ``external_port`` on the router's public address to
    ``internal_port`` on this machine's LAN address. It is removed on :meth:`close`, at
    interpreter exit, and never outlives a clean shutdown; a router keeps a mapping of a
    process killed outright until it is removed by hand or the router restarts.
    """

    def __init__(
        self,
        internal_port: int,
        external_port: int | None = None,
        *,
        description: str = "agentgpt env server",
        upnp: Any = None,
    ) -> None:
        self.internal_port = int(internal_port)
        self.external_port = int(external_port or internal_port)
        self.description = description
        self._upnp = upnp
        self.external_address: str | None = None
        self.lan_address: str | None = None
        self._open = False

    def open(self) -> UpnpMapping:
        upnp = self._upnp
        if upnp is None:
            try:
                import miniupnpc
            except ImportError:
                raise UpnpError(
                    "UPnP needs the miniupnpc package: pip install 'agentgpt[upnp]'"
                ) from None
            upnp = self._upnp = miniupnpc.UPnP()
            upnp.discoverdelay = 2000
        try:
            if not upnp.discover():
                raise UpnpError("no UPnP device answered on this network")
            upnp.selectigd()
            self.lan_address = str(upnp.lanaddr)
            self.external_address = str(upnp.externalipaddress()) or None
            existing = upnp.getspecificportmapping(self.external_port, "TCP")
            if existing and (existing[0], int(existing[1])) != (
                self.lan_address,
                self.internal_port,
            ):
                raise UpnpError(
                    f"the router already forwards port {self.external_port} to"
                    f" {existing[0]}:{existing[1]}; pick another --port"
                )
            ok = upnp.addportmapping(
                self.external_port,
                "TCP",
                self.lan_address,
                self.internal_port,
                self.description,
                "",
            )
        except UpnpError:
            raise
        except Exception as exc:  # miniupnpc raises plain Exception for router errors
            raise UpnpError(f"the router refused the port mapping: {exc}") from None
        if not ok:
            raise UpnpError("the router refused the port mapping")
        self._open = True
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Remove the mapping (best effort). Safe to call again."""
        if not self._open:
            return
        self._open = False
        atexit.unregister(self.close)
        with contextlib.suppress(Exception):
            self._upnp.deleteportmapping(self.external_port, "TCP")

    @property
    def is_open(self) -> bool:
        return self._open
