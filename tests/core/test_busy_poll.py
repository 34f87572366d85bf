"""Busy-polling: the adaptive window, polling real sockets, and where it is switched on."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agentgpt.core.busy_poll import LIMIT_ENV, SERVER_LIMIT_S, BusyPoll, client_limit_s


@pytest.fixture()
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_the_window_follows_short_waits_and_closes_for_long_ones() -> None:
    busy = BusyPoll(1e-3)
    assert busy.window_s == 0.0  # nothing learned yet: never spins blind
    for _ in range(40):
        busy.learn(200e-6)
    assert busy.typical_s == pytest.approx(200e-6, rel=1e-3)
    assert busy.window_s == pytest.approx(200e-6 * 1.5 + 10e-6, rel=1e-3)
    for _ in range(40):
        busy.learn(5e-3)  # the client now thinks between requests
    assert busy.window_s == 0.0
    for _ in range(60):
        busy.learn(100e-6)
    assert 0 < busy.window_s <= 1e-3  # and polls again once waits are short again


def test_the_window_never_exceeds_the_limit() -> None:
    busy = BusyPoll(300e-6)
    for _ in range(40):
        busy.learn(290e-6)
    assert busy.window_s == pytest.approx(300e-6)


def test_one_long_pause_does_not_stall_learning_for_long() -> None:
    busy = BusyPoll(1e-3)
    for _ in range(40):
        busy.learn(100e-6)
    busy.learn(30.0)  # an update of half a minute between two rollouts
    assert busy.typical_s < 1e-3  # counted as 4 limits at most
    for _ in range(20):
        busy.learn(100e-6)
    assert busy.typical_s < 200e-6


def test_a_zero_limit_never_polls() -> None:
    busy = BusyPoll(0.0)
    for _ in range(10):
        busy.learn(1e-6)
    assert busy.window_s == 0.0 and busy.typical_s is None
    with pytest.raises(ValueError, match="0 or more"):
        BusyPoll(-1.0)


def test_spin_returns_as_soon_as_the_socket_is_readable(pair) -> None:
    left, right = pair
    busy = BusyPoll(1.0)
    busy.window_s = 1.0
    threading.Timer(0.02, lambda: right.send(b"x")).start()
    started = time.perf_counter()
    assert busy.spin_socket(left) is True
    assert time.perf_counter() - started < 0.9
    assert left.recv(1) == b"x"


def test_spin_gives_up_at_the_end_of_the_window(pair) -> None:
    left, _ = pair
    busy = BusyPoll(1.0)
    busy.window_s = 0.01
    started = time.perf_counter()
    assert busy.spin([left.fileno()]) is False
    assert time.perf_counter() - started >= 0.01


def test_spin_without_a_window_returns_at_once(pair) -> None:
    left, right = pair
    right.send(b"x")
    assert BusyPoll(1e-3).spin_socket(left) is False  # window 0: the caller blocks instead


def test_the_client_limit_comes_from_the_argument_or_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    assert client_limit_s() == pytest.approx(1e-3)
    assert client_limit_s(0) == 0.0
    monkeypatch.setenv(LIMIT_ENV, "400")
    assert client_limit_s() == pytest.approx(400e-6)
    assert client_limit_s(50) == pytest.approx(50e-6)
    monkeypatch.setenv(LIMIT_ENV, "fast")
    with pytest.raises(ValueError, match="not a number of microseconds"):
        client_limit_s()
    monkeypatch.setenv(LIMIT_ENV, "-5")
    with pytest.raises(ValueError, match="0 \\(never poll\\) or more"):
        client_limit_s()


def test_the_env_server_flag_default_is_the_servers_limit() -> None:
    import inspect

    from agentgpt.cli.envhost import env_server
    from agentgpt.envhost import EnvServer

    flag = inspect.signature(env_server).parameters["busy_poll_us"].default
    server = inspect.signature(EnvServer).parameters["busy_poll_us"].default
    assert flag == server == pytest.approx(SERVER_LIMIT_S * 1e6)


def test_polls_that_keep_missing_back_off_and_one_that_hits_ends_the_backoff(pair) -> None:
    """When what a poll waits for needs this very process (a server in one of its
    threads), every poll misses; after two misses in a row polling pauses for 16 waits,
    then 32, and so on."""
    left, right = pair
    busy = BusyPoll(1.0)
    busy.window_s = 0.001
    assert busy.spin_socket(left) is False and busy.misses == 1  # one miss: no pause yet
    assert busy.spin_socket(left) is False and busy.misses == 2
    skipped = 0
    while busy.spin_socket(left) is False and busy.misses == 2:
        skipped += 1
    assert skipped == 16 and busy.misses == 3  # the 17th call polled again, and missed
    skipped = 0
    while busy.spin_socket(left) is False and busy.misses == 3:
        skipped += 1
    assert skipped == 32
    right.send(b"x")
    for _ in range(65):  # 64 skipped after the 4th miss in a row, then a poll
        if busy.spin_socket(left):
            break
    assert busy.misses == 0  # a poll that found data: back to polling every time
    assert busy.spin_socket(left) is True
