"""The fleet's event queue, which its thread waits on together with sockets.

Worker threads (making envs, recovering from faults) and host probes report events on one
queue. Steps over the streaming session do not need a thread at all: the fleet's thread
sends them and reads their answers itself (:mod:`.streams`), waiting on the streams'
sockets. So that one wait covers both, a thread that queues an event while the fleet's
thread sleeps in :meth:`EventQueue.wait` also wakes it through a socket pair; when
nobody waits, queueing costs no system call.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from agentgpt.core.busy_poll import BusyPoll

__all__ = ["EventQueue", "readable"]


class EventQueue:
    """A thread-safe FIFO of events with a wait that also ends when a socket is readable."""

    def __init__(self, busy_poll: BusyPoll | None = None) -> None:
        #: Polls the sockets briefly before :meth:`wait` sleeps (``None``: never).
        self.busy_poll = busy_poll
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._sleeping = False
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)

    def put(self, event: Any) -> None:
        """Queue ``event`` (any thread) and wake the waiter, if there is one."""
        self._queue.put(event)
        with self._lock:
            sleeping = self._sleeping
        if sleeping:
            with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                self._wake_write.send(b"\0")

    def get(self, timeout: float | None = None) -> Any:
        """The next event; waits up to ``timeout`` (``None``: forever), then raises
        :class:`queue.Empty`."""
        return self._queue.get(timeout=timeout)

    def get_nowait(self) -> Any:
        return self._queue.get_nowait()

    def wait(self, sockets: Sequence[socket.socket], timeout: float | None) -> set[int]:
        """Sleep until an event is queued, one of ``sockets`` is readable or ``timeout``
        seconds pass; returns the file descriptors of the readable sockets."""
        with self._lock:
            self._sleeping = True
        try:
            if not self._queue.empty():
                return set()
            everything = [self._wake_read, *sockets]
            busy, started = self.busy_poll, time.perf_counter()
            polls = busy is not None and busy.window_s > 0
            if polls and busy.spin([sock.fileno() for sock in everything]):
                ready = readable(everything, 0)
            else:
                ready = readable(everything, timeout)
            if busy is not None:
                busy.learn(time.perf_counter() - started)
        finally:
            with self._lock:
                self._sleeping = False
        if self._wake_read.fileno() in ready:
            ready.discard(self._wake_read.fileno())
            with contextlib.suppress(OSError):
                while self._wake_read.recv(4096):
                    pass
        return ready

    def close(self) -> None:
        self._wake_read.close()
        self._wake_write.close()


def readable(sockets: Sequence[socket.socket], timeout: float | None) -> set[int]:
    """The file descriptors of ``sockets`` that are readable within ``timeout`` seconds."""
    if not hasattr(select, "poll"):  # Windows
        readable, _, _ = select.select(sockets, [], [], timeout)
        return {sock.fileno() for sock in readable}
    poller = select.poll()
    for sock in sockets:
        poller.register(sock, select.POLLIN)
    millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return {fd for fd, _ in poller.poll(millis)}
