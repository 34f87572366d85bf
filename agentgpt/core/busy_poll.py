"""Busy-polling: watch a socket for a short, learned while before sleeping on it.

Why: a process that blocks on a socket gives its CPU back, and on a virtual machine an
idle vCPU is halted. Waking it again costs the sender an exit to the hypervisor and the
receiver the time the host takes to resume the vCPU: on the 2-core VM of
``docs/benchmarks.md`` about 35 µs each way, so a loopback round trip between two
blocking Python processes takes about 80 µs, and about 8 µs when both poll instead. The
kernel's own remedy, guest halt-polling, is switched off on many clouds (``cat
/sys/module/haltpoll/parameters/guest_halt_poll_ns``); polling in the process that
waits gives the same effect exactly where it pays: between requests and answers that
follow each other within a fraction of a millisecond (an env server's next step, a
vector env's answer).

The window learns from the waits it sees, as KVM's adaptive halt-polling does: it is the
recent typical wait plus a margin (at most the limit) when that typical wait is under the
limit, and zero otherwise. So a process whose waits are long (a trainer between rollouts,
a server whose client is thinking) never spins, and one whose waits are short spins about
as long as they last. While polling, the thread yields its CPU at every turn, so any other
task runnable on that CPU goes first.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Sequence

__all__ = ["BusyPoll", "CLIENT_LIMIT_US", "LIMIT_ENV", "SERVER_LIMIT_S", "client_limit_s"]

#: Environment variable with the clients' polling limit in microseconds (``0``: never poll).
LIMIT_ENV = "AGENTGPT_BUSY_POLL_US"
#: A client's default limit: covers the answer of a 64-env CartPole vector step.
CLIENT_LIMIT_US = 1000.0
#: An env server's default limit for polling a connection for its next request: covers a
#: client that steps in a loop, not one that thinks (a policy's forward pass) in between.
SERVER_LIMIT_S = 250e-6

_MARGIN = 1.5  # window = typical wait x margin + slack, so most waits end inside it
_SLACK_S = 10e-6
_WEIGHT = 0.125  # of a new wait in the running typical wait
_FIRST_SKIP, _MAX_SKIP = 16, 4096  # waits without polling after 2, 3, ... misses in a row
_HAS_POLL = hasattr(select, "poll")
_yield = getattr(os, "sched_yield", lambda: None)  # not on Windows


def client_limit_s(limit_us: float | None = None) -> float:
    """A client's polling limit in seconds: ``limit_us`` if given, else
    ``$AGENTGPT_BUSY_POLL_US``, else 1 ms."""
    if limit_us is not None:
        if limit_us < 0:
            raise ValueError(f"busy_poll_us must be 0 (never poll) or more, not {limit_us}")
        return limit_us * 1e-6
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return CLIENT_LIMIT_US * 1e-6
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{LIMIT_ENV}={raw!r} is not a number of microseconds") from None
    if value < 0:
        raise ValueError(f"{LIMIT_ENV}={raw!r} must be 0 (never poll) or more")
    return value * 1e-6


class BusyPoll:
    """The adaptive polling window of one waiter (a connection, a fleet).

    Typical use::

        started = time.perf_counter()
        busy.spin([sock.fileno()])      # polls within the window; True once readable
        data = sock.recv(...)           # blocks only if the window ran out first
        busy.learn(time.perf_counter() - started)
    """

    def __init__(self, limit_s: float) -> None:
        if limit_s < 0:
            raise ValueError(f"the polling limit must be 0 or more, not {limit_s}")
        self.limit_s = limit_s
        #: The running typical wait in seconds (``None`` before the first).
        self.typical_s: float | None = None
        self.window_s = 0.0
        #: Polls in a row that ended with nothing to read, and polls left to skip for it.
        self.misses = 0
        self._skip = 0
        self._fds: tuple[int, ...] = ()
        self._poller: select.poll | None = None

    def learn(self, waited_s: float) -> None:
        """Take one wait's length (from the request, or the answer, to readability)."""
        if self.limit_s <= 0:
            return
        waited_s = min(waited_s, 4 * self.limit_s)  # one long pause must not stall learning
        typical = self.typical_s
        typical = waited_s if typical is None else typical + _WEIGHT * (waited_s - typical)
        self.typical_s = typical
        self.window_s = (
            min(typical * _MARGIN + _SLACK_S, self.limit_s) if typical <= self.limit_s else 0.0
        )

    def spin(self, fds: Sequence[int]) -> bool:
        """Poll ``fds`` until one is readable (``True``) or the window ends (``False``)."""
        window = self.window_s
        if window <= 0:
            return False
        if self._skip:
            self._skip -= 1
            return False
        ready = self._ready_check(tuple(fds))
        deadline = time.perf_counter() + window
        while True:
            if ready():
                self.misses = 0
                return True
            if time.perf_counter() >= deadline:
                break
            _yield()
        # What polling waits for may need this very process (a server in a thread of it
        # needs the interpreter lock, which polling keeps taking back): then every poll
        # misses. Back off exponentially from the second miss in a row.
        self.misses += 1
        if self.misses >= 2:
            self._skip = min(_FIRST_SKIP << (self.misses - 2), _MAX_SKIP)
        return False

    def spin_socket(self, sock: socket.socket) -> bool:
        """:meth:`spin` on one socket; a TLS socket that holds decrypted bytes already is
        readable at once (its file descriptor shows nothing new)."""
        if self.window_s <= 0:
            return False
        pending = getattr(sock, "pending", None)  # ssl.SSLSocket
        if pending is not None and pending():
            return True
        return self.spin((sock.fileno(),))

    def _ready_check(self, fds: tuple[int, ...]) -> Callable[[], bool]:
        if not _HAS_POLL:  # Windows: no poll(), and select() takes sockets only
            return lambda: bool(select.select(fds, [], [], 0)[0])
        if fds != self._fds or self._poller is None:
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            self._fds, self._poller = fds, poller
        poller = self._poller
        return lambda: bool(poller.poll(0))
