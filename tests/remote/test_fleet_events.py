"""The fleet's event queue: one wait for events from other threads and for sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agentgpt.remote.fleet.events import EventQueue, readable


@pytest.fixture
def events():
    queue = EventQueue()
    yield queue
    queue.close()


def test_a_wait_ends_when_another_thread_queues_an_event(events) -> None:
    a, b = socket.socketpair()
    with a, b:
        timer = threading.Timer(0.2, events.put, args=("news",))
        started = time.monotonic()
        timer.start()
        assert events.wait([a], timeout=10.0) == set()
        assert 0.1 < time.monotonic() - started < 5.0
        assert events.get_nowait() == "news"


def test_a_wait_ends_when_a_socket_is_readable_and_names_it(events) -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        threading.Timer(0.2, d.send, args=(b"x",)).start()
        assert events.wait([a, c], timeout=10.0) == {c.fileno()}
        assert readable([a, c], 0.0) == {c.fileno()}


def test_a_wait_returns_at_once_with_an_event_queued_and_times_out_otherwise(events) -> None:
    a, b = socket.socketpair()
    with a, b:
        events.put(1)
        started = time.monotonic()
        events.wait([a], timeout=10.0)
        assert time.monotonic() - started < 1.0
        assert events.get(timeout=0) == 1
        started = time.monotonic()
        assert events.wait([a], timeout=0.2) == set()
        assert time.monotonic() - started >= 0.15


def test_events_queued_while_nobody_waits_leave_no_wake_up_behind(events) -> None:
    """Queueing without a waiter costs no write, so a later wait is not woken for it."""
    a, b = socket.socketpair()
    with a, b:
        for n in range(1000):
            events.put(n)
        assert [events.get_nowait() for _ in range(1000)] == list(range(1000))
        started = time.monotonic()
        assert events.wait([a], timeout=0.2) == set()
        assert time.monotonic() - started >= 0.15
