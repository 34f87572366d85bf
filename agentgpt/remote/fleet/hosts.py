"""Env hosts of a fleet: their state, and probing the ones that are down.

A down host is asked ``GET /health`` with exponential backoff until it answers. The
answer's ``incarnation`` is what lets the fleet tell a server that restarted (every env
key it handed out is dead) from one that was only slow (its envs may still exist and are
closed before new ones are made).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from agentgpt.protocol import routes
from agentgpt.protocol.answers import health_incarnation
from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.fleet.events import EventQueue
from agentgpt.remote.fleet.streams import Endpoint

__all__ = ["Backoff", "Host", "HostBack", "HostStatus", "Prober"]


@dataclass(frozen=True)
class HostStatus:
    """A snapshot of one host, as :attr:`Fleet.hosts` reports it."""

    url: str
    #: Whether the host answers; a host just back may still be making its envs.
    up: bool
    #: The server process's id from its last answer (``None`` before the first).
    incarnation: str | None
    #: The slots (env ids) its envs fill; fixed for the fleet's life.
    slots: range
    #: How many times it went down (including being unreachable at start).
    times_down: int
    #: Seconds it has been down in all, the current outage included.
    downtime: float = 0.0
    #: Why it last went down ("" if it never did).
    reason: str = ""


class Backoff:
    """Delays that start at ``initial`` and double up to ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(delay * 2.0, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class HostBack(NamedTuple):
    """A down host answered ``/health``."""

    prober: Prober
    incarnation: str | None


class Prober:
    """Polls one down host's ``/health`` with backoff; reports once when it answers."""

    def __init__(
        self, endpoint: Endpoint, events: EventQueue, owner: Any, backoff: Backoff
    ) -> None:
        self.owner = owner
        self._endpoint = endpoint
        self._events = events
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"fleet-probe:{endpoint.label}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._backoff.next_delay()):
            # A new connection each time: a host found through DNS may have moved.
            transport = self._endpoint.transport(short=True)
            try:
                health = transport.get(routes.HEALTH)
            except RemoteEnvError:
                continue
            finally:
                transport.close()
            if not self._stop.is_set():
                self._events.put(HostBack(self, health_incarnation(health)))
            return


class Host:
    """The fleet's record of one host (touched only by the fleet's own thread)."""

    def __init__(self, index: int, endpoint: Endpoint, slots: range, backoff: Backoff) -> None:
        self.index = index
        self.endpoint = endpoint
        self.url = endpoint.url
        self.label = endpoint.label
        self.slots = slots
        self.backoff = backoff
        self.streams: list[Any] = []
        self.up = True
        self.incarnation: str | None = None
        self.times_down = 0
        #: When it went down and has not served an answer since (``None``: serving).
        self.down_since: float | None = None
        #: Seconds of the outages that have ended.
        self.past_downtime = 0.0
        self.reason = ""
        self.prober: Prober | None = None

    @property
    def server_envs(self) -> int:
        return sum(stream.env_count for stream in self.streams)

    def mark_down(self, reason: str) -> None:
        self.up = False
        self.times_down += 1
        self.reason = reason
        if self.down_since is None:
            self.down_since = time.monotonic()

    def mark_serving(self) -> None:
        """It served an answer: an outage in progress ends."""
        if self.down_since is not None:
            self.past_downtime += time.monotonic() - self.down_since
            self.down_since = None
            self.backoff.reset()

    def status(self) -> HostStatus:
        ongoing = 0.0 if self.down_since is None else time.monotonic() - self.down_since
        return HostStatus(
            self.url,
            self.up,
            self.incarnation,
            self.slots,
            self.times_down,
            self.past_downtime + ongoing,
            self.reason,
        )
