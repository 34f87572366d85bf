"""Fleet fault tolerance against real env servers that stop, restart, hang and raise."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import gymnasium
import numpy as np
import pytest

from agentgpt import wire
from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.remote.errors import remote_error
from agentgpt.remote.fleet import Fleet, FleetBatch, FleetDownError
from agentgpt.remote.fleet.faults import Fault, classify, describe
from agentgpt.service import direct_frames

LANDMARKS = "agentgpt/Landmarks-v0"
KEY = "fleet-fault-test-key"
FAST = {
    "step_timeout": 10.0,
    "connect_timeout": 1.0,
    "backoff_initial": 0.02,
    "backoff_max": 0.1,
    "fleet_timeout": 30.0,
}


# ------------------------------------------------------------------------ test envs


class GatedCartPole(gymnasium.Wrapper):
    """CartPole whose steps wait until ``gate`` is open (``entered`` is set meanwhile)."""

    def __init__(self, gate: threading.Event, entered: threading.Event | None = None) -> None:
        super().__init__(gymnasium.make("CartPole-v1"))
        self.gate = gate
        self.entered = entered or threading.Event()

    def step(self, action):
        self.entered.set()
        self.gate.wait()
        return self.env.step(action)


class FlakyCartPole(gymnasium.Wrapper):
    """CartPole that raises on its step number ``fail_at`` (never with ``None``)."""

    def __init__(self, fail_at: int | None) -> None:
        super().__init__(gymnasium.make("CartPole-v1"))
        self.fail_at = fail_at
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.fail_at:
            raise RuntimeError(f"boom at step {self.steps}")
        return self.env.step(action)


def flaky_factory(doomed, fail_at: int):
    """Builds FlakyCartPoles; the ``n``-th one built fails when ``doomed(n)``. (Instance 0
    is the env a fleet makes, and closes, to learn the spaces.)"""
    made = iter(range(10**6))

    def make():
        return FlakyCartPole(fail_at if doomed(next(made)) else None)

    return make


class KeyRecorder:
    """ASGI middleware that records the ``env_key`` of every request a server receives,
    and the ``seed`` of every make, over HTTP and in the frames of a streaming session."""

    def __init__(self, server: EnvServer) -> None:
        self.inner = server.app
        self.keys: list[str] = []
        self.make_seeds: list[int | None] = []

    def _record(self, path: str, decoded: object) -> None:
        if isinstance(decoded, dict) and "env_key" in decoded:
            self.keys.append(decoded["env_key"])
        if path in ("/make", "/make_vec") and isinstance(decoded, dict):
            self.make_seeds.append(decoded.get("seed"))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            # Frames reach this middleware only through ASGI: withdraw the server's offer
            # to hand them to the session directly.
            extensions = dict(scope.get("extensions") or {})
            extensions.pop(direct_frames.EXTENSION, None)
            scope = {**scope, "extensions": extensions}

            async def frames():
                message = await receive()
                if message["type"] == "websocket.receive" and message.get("bytes"):
                    frame = wire.decode(message["bytes"], wire.MSGPACK_MEDIA_TYPE)
                    self._record(frame.get("path"), frame.get("body"))
                return message

            await self.inner(scope, frames, send)
            return
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        media = wire.media_type_from_header(headers.get(b"content-type", b"").decode())
        if body and media:
            self._record(scope["path"], wire.decode(body, media))

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.inner(scope, replay, send)


# ------------------------------------------------------------------------ helpers


class Restartable:
    """An env server on a fixed port that the test stops and starts again."""

    def __init__(self, **server_kwargs) -> None:
        self.server_kwargs = server_kwargs
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: EnvServer | None = None
        self.recorder: KeyRecorder | None = None
        self._context: contextlib.AbstractContextManager | None = None

    def start(self) -> Restartable:
        self.server = EnvServer(**self.server_kwargs)
        self.recorder = KeyRecorder(self.server)
        self._context = run_server_in_thread(self.recorder, port=self.port)
        assert self._context.__enter__() == self.url
        return self

    def stop(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)

    def env_keys(self) -> set[str]:
        return {session.key for session in self.server.table.sessions()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def restartable(**server_kwargs) -> Iterator[Restartable]:
    host = Restartable(**server_kwargs)
    try:
        yield host.start()
    finally:
        host.stop()


def _zeros(batch: FleetBatch) -> np.ndarray:
    return np.zeros(batch.env_ids.size, dtype=np.int64)


def _answer(fleet: Fleet, batch: FleetBatch, skip=()) -> None:
    """Send an action for every row that expects one, except the slots in ``skip``."""
    wanted = ~batch.cut & ~np.isin(batch.env_ids, list(skip))
    if wanted.any():
        fleet.send(_zeros(batch)[wanted], batch.env_ids[wanted])


def _fleet_log(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agentgpt.fleet"]


# ------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("status", "error_type", "fault"),
    [
        (None, "connection_error", Fault.HOST),
        (None, "timeout", Fault.HOST),
        (429, "too_many_envs", Fault.HOST),
        (500, "internal_error", Fault.HOST),
        (502, "http_error", Fault.HOST),
        (408, "http_error", Fault.HOST),
        (500, "env_error", Fault.ENV),
        (404, "env_not_found", Fault.MISSING),
        (404, "unknown_env", Fault.FATAL),
        (401, "unauthorized", Fault.FATAL),
        (422, "invalid_action", Fault.FATAL),
        (409, "reset_needed", Fault.FATAL),
        (200, "bad_response", Fault.FATAL),
    ],
)
def test_the_fault_follows_from_the_error_class(status, error_type, fault):
    assert classify(remote_error(status, error_type, "why")) is fault


def test_errors_of_the_caller_are_fatal_and_reasons_are_short():
    assert classify(ValueError("spaces differ")) is Fault.FATAL
    assert describe(remote_error(None, "timeout", "POST http://h/step got none")) == (
        "no answer in time"
    )
    assert describe(remote_error(None, "connection_error", "refused")) == "refused"
    assert describe(remote_error(500, "env_error", "RuntimeError: boom")) == (
        "HTTP 500 env_error: RuntimeError: boom"
    )


# ------------------------------------------------------------------------ host down


def test_a_stopped_host_is_cut_once_and_its_restart_gets_fresh_envs(env_server, caplog):
    caplog.set_level(logging.DEBUG, logger="agentgpt.fleet")
    steady = env_server(api_keys=[KEY])
    with restartable(api_keys=[KEY]) as flaky:
        fleet = Fleet.from_urls(
            [steady, flaky.url], "CartPole-v1", envs_per_host=2, seed=0, api_key=KEY, **FAST
        )
        with fleet:
            old_incarnation = fleet.hosts[1].incarnation
            fleet.async_reset()
            seen = np.zeros(4, dtype=np.int64)
            while seen[2:].min() == 0:
                batch = fleet.recv(timeout=10.0)
                seen[batch.env_ids] += 1
                _answer(fleet, batch, skip=[2, 3])  # the second host's actions are held
            old_keys = flaky.env_keys()
            assert len(old_keys) == 1
            flaky.stop()
            fleet.send(np.zeros(2, np.int64), np.array([2, 3]))  # reaches a dead server

            cuts = Counter()
            steady_rows = 0
            while sum(cuts.values()) < 2:
                batch = fleet.recv(timeout=10.0)
                cuts.update(batch.env_ids[batch.cut].tolist())
                steady_rows += int(np.isin(batch.env_ids, [0, 1]).sum())
                _answer(fleet, batch)
            assert cuts == {2: 1, 3: 1}
            assert not fleet.hosts[1].up and fleet.hosts[1].times_down == 1
            outage = fleet.hosts[1].downtime
            time.sleep(0.01)
            assert fleet.hosts[1].downtime > outage  # counted while it lasts
            for _ in range(5):  # the other host keeps stepping meanwhile
                batch = fleet.recv(timeout=10.0)
                assert set(batch.env_ids.tolist()) == {0, 1} and not batch.cut.any()
                steady_rows += 2
                _answer(fleet, batch)

            flaky.start()  # a new server process on the same port
            back = None
            while back is None:
                batch = fleet.recv(timeout=10.0)
                assert not batch.cut.any(), "a slot was cut twice"
                rows = np.isin(batch.env_ids, [2, 3])
                if rows.any():
                    back = batch
                    assert rows.sum() == 2
                _answer(fleet, batch)
            rows = np.isin(back.env_ids, [2, 3])
            assert back.present[rows].all()
            assert back.reward[rows].tolist() == [0.0, 0.0]  # first observation of an episode
            assert not (back.terminated[rows] | back.truncated[rows]).any()
            status = fleet.hosts[1]
            assert status.up and status.times_down == 1
            assert status.incarnation == flaky.server.incarnation != old_incarnation
            # The outage is over: its length is counted once and no longer grows.
            assert status.downtime > 0 and status.reason
            assert fleet.hosts[1].downtime == status.downtime
            assert fleet.hosts[0].downtime == 0 and fleet.hosts[0].reason == ""
            # The new server process never heard of the old env key.
            assert flaky.recorder.keys and not (set(flaky.recorder.keys) & old_keys)
            # Seeds 0-3 went to the first envs (sub-env i: seed + i); the remade vector env
            # starts after them.
            assert flaky.recorder.make_seeds == [4]
            assert steady_rows >= 12

    messages = [r.getMessage() for r in _fleet_log(caplog)]
    down = [m for m in messages if "is down" in m]
    assert len(down) == 1 and flaky.url in down[0]
    back_lines = [m for m in messages if "is back" in m]
    assert len(back_lines) == 1 and "its server restarted" in back_lines[0]
    assert "making its 2 env(s) again" in back_lines[0]
    assert KEY not in caplog.text


def test_a_restart_seen_as_an_unknown_env_key_counts_as_the_host_going_down(
    monkeypatch, caplog, transport_kind
):
    if transport_kind == "stream":
        pytest.skip(
            "a stream ends with the server process, so no step can reach a restarted one;"
            " that loss is the stopped-host test's case"
        )
    # Every request on a new connection, so a step can reach the restarted process.
    monkeypatch.setattr("agentgpt.remote.transport._KEEPALIVE_EXPIRY", 0.0)
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    with (
        restartable() as host,
        Fleet.from_urls([host.url], "CartPole-v1", envs_per_host=2, **FAST) as fleet,
    ):
        fleet.async_reset(seed=0)
        batch = fleet.recv(timeout=10.0)
        (old_key,) = host.env_keys()
        host.stop()
        host.start()
        _answer(fleet, batch)  # 404 env_not_found from the new process
        batch = fleet.recv(timeout=10.0)
        assert batch.cut.tolist() == [True, True]
        batch = fleet.recv(timeout=10.0)
        assert batch.present.tolist() == [True, True] and not batch.cut.any()
        assert fleet.hosts[0].times_down == 1
        assert fleet.hosts[0].incarnation == host.server.incarnation
        # The step that met the new process was the only use of the old key: no /close.
        assert host.recorder.keys.count(old_key) == 1
        assert host.env_keys() and old_key not in host.env_keys()
    messages = [r.getMessage() for r in _fleet_log(caplog)]
    assert any("is down (the server restarted" in m for m in messages)
    assert any("is back (its server restarted)" in m for m in messages)


def test_idle_envs_of_a_down_host_are_cut_at_once_and_take_no_more_actions(env_server):
    with restartable(register=PETTINGZOO_ENVS) as host:
        fleet = Fleet.from_urls([host.url], LANDMARKS, envs_per_host=2, seed=2, **FAST)
        with fleet:
            fleet.async_reset()
            seen = np.zeros(4, dtype=np.int64)
            while seen.min() == 0:
                batch = fleet.recv(timeout=10.0)
                seen[batch.env_ids] += 1
            host.stop()
            fleet.send(np.zeros(2, np.int64), np.array([0, 1]))  # the first env's step fails
            cuts = Counter()
            while sum(cuts.values()) < 4:
                batch = fleet.recv(timeout=10.0)
                assert batch.cut.all() and not batch.present.any()
                cuts.update(batch.env_ids.tolist())
            assert cuts == {0: 1, 1: 1, 2: 1, 3: 1}  # the idle second env too, once
            with pytest.raises(ValueError, match="not awaiting"):
                fleet.send(np.zeros(2, np.int64), np.array([2, 3]))
            assert fleet.recv(timeout=0.3).env_ids.size == 0


def test_a_hung_host_times_out_and_its_envs_are_made_again_on_the_same_process(env_server, caplog):
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    gate = threading.Event()
    steady = env_server(register={"Sim-v0": lambda: gymnasium.make("CartPole-v1")})
    server = EnvServer(register={"Sim-v0": lambda: GatedCartPole(gate)})
    slow = env_server(server)
    options = {**FAST, "step_timeout": 0.5}
    try:
        fleet = Fleet.from_urls([steady, slow], "Sim-v0", envs_per_host=1, seed=9, **options)
        with fleet:
            fleet.async_reset()
            (old_key,) = {s.key for s in server.table.sessions()}
            cuts = Counter()
            back = False
            while not back:
                batch = fleet.recv(timeout=10.0)
                cuts.update(batch.env_ids[batch.cut].tolist())
                if cuts[1] and (batch.env_ids[~batch.cut] == 1).any():
                    back = True
                _answer(fleet, batch)
            assert cuts == {1: 1}
            assert fleet.hosts[1].incarnation == server.incarnation
            assert old_key not in {s.key for s in server.table.sessions()}  # closed first
    finally:
        gate.set()
    messages = [r.getMessage() for r in _fleet_log(caplog)]
    assert any("is down (no answer within 0.5 s)" in m for m in messages)
    assert any("is back (the same server process)" in m for m in messages)


def test_every_host_down_past_the_fleet_timeout_raises(env_server):
    with restartable() as one, restartable() as two:
        options = {**FAST, "fleet_timeout": 0.5}
        with Fleet.from_urls(
            [one.url, two.url], "CartPole-v1", envs_per_host=1, **options
        ) as fleet:
            fleet.reset(seed=0)
            one.stop()
            two.stop()
            cut = Counter()
            with pytest.raises(FleetDownError) as caught:
                for _ in range(100):
                    obs, reward, terminated, truncated, info = fleet.step(np.zeros(2, np.int64))
                    cut.update(np.flatnonzero(truncated & info.get("down", False)).tolist())
            assert cut == {0: 1, 1: 1}
            assert one.url in str(caught.value) and two.url in str(caught.value)
            assert "more than 0.5 s" in str(caught.value)


def test_an_unreachable_host_starts_down_and_joins_when_it_comes_up(env_server, caplog):
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    steady = env_server()
    late = Restartable()
    try:
        fleet = Fleet.from_urls([late.url, steady], "CartPole-v1", envs_per_host=2, **FAST)
        with fleet:
            assert [h.up for h in fleet.hosts] == [False, True]
            assert fleet.hosts[0].times_down == 1
            fleet.async_reset(seed=0)
            for _ in range(3):
                batch = fleet.recv(timeout=10.0)
                assert set(batch.env_ids.tolist()) == {2, 3}
                _answer(fleet, batch)
            late.start()
            while True:
                batch = fleet.recv(timeout=10.0)
                assert not batch.cut.any()
                _answer(fleet, batch)
                if np.isin(batch.env_ids, [0, 1]).any():
                    break
            assert fleet.hosts[0].up and fleet.hosts[0].incarnation == late.server.incarnation
    finally:
        late.stop()
    messages = [r.getMessage() for r in _fleet_log(caplog)]
    assert any("is unreachable" in m and late.url in m for m in messages)
    assert any("is back (reached for the first time)" in m for m in messages)


def test_no_reachable_host_within_the_fleet_timeout_raises():
    urls = [f"http://127.0.0.1:{_free_port()}" for _ in range(2)]
    with pytest.raises(FleetDownError, match="no env host answered within 0.3 s"):
        Fleet.from_urls(urls, "CartPole-v1", envs_per_host=1, **{**FAST, "fleet_timeout": 0.3})


# ------------------------------------------------------------------------ env faults


def test_an_env_error_cuts_only_that_env_which_is_made_again(env_server, caplog):
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    flaky = env_server(register={"Sim-v0": flaky_factory(lambda n: n == 1, fail_at=3)})
    steady = env_server(register={"Sim-v0": lambda: FlakyCartPole(None)})
    with Fleet.from_urls([flaky, steady], "Sim-v0", envs_per_host=2, seed=4, **FAST) as fleet:
        fleet.async_reset()
        cuts = Counter()
        rows = Counter()
        after_cut = []
        # The cut comes once the failed env is freed on its server, which on a loaded
        # machine can take longer than many steps of the healthy host: read at least 40
        # batches, and on until the remade env has stepped (or 30 s have passed).
        deadline = time.monotonic() + 30.0
        received = 0
        while received < 40 or (set(after_cut) != {0, 1} and time.monotonic() < deadline):
            batch = fleet.recv(timeout=10.0)
            received += 1
            cuts.update(batch.env_ids[batch.cut].tolist())
            rows.update(batch.env_ids[~batch.cut].tolist())
            if cuts:
                after_cut.extend(batch.env_ids[~batch.cut & np.isin(batch.env_ids, [0, 1])])
            _answer(fleet, batch)
        assert cuts == {0: 1, 1: 1}
        assert set(after_cut) == {0, 1}  # made again and stepping
        assert rows[2] >= 10 and rows[3] >= 10
        assert [h.times_down for h in fleet.hosts] == [0, 0]
    warnings = [r for r in _fleet_log(caplog) if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert flaky in message and "RuntimeError: boom at step 3" in message
    assert "env " in message and "(not made)" not in message


def test_an_env_that_keeps_failing_is_backed_off_and_logged_at_growing_intervals(
    env_server, caplog
):
    caplog.set_level(logging.DEBUG, logger="agentgpt.fleet")
    url = env_server(register={"Sim-v0": flaky_factory(lambda n: n > 0, fail_at=1)})
    with Fleet.from_urls([url], "Sim-v0", envs_per_host=1, **FAST) as fleet:
        fleet.async_reset(seed=0)
        cuts = 0
        while cuts < 9:
            batch = fleet.recv(timeout=10.0)
            cuts += int(batch.cut.sum())
            _answer(fleet, batch)
    warnings = [r.getMessage() for r in _fleet_log(caplog) if r.levelno >= logging.WARNING]
    assert len(warnings) == 4  # failures 1, 2, 4 and 8
    assert "failed (HTTP 500 env_error: RuntimeError: boom at step 1)" in warnings[0]
    assert [w.split(": ")[1].split(" failures")[0] for w in warnings[1:]] == ["2", "4", "8"]


def test_an_expired_env_is_made_again_without_taking_its_host_down(env_server):
    server = EnvServer(idle_timeout=0.2)
    url = env_server(server)
    with Fleet.from_urls([url], "CartPole-v1", envs_per_host=2, **FAST) as fleet:
        fleet.async_reset(seed=0)
        batch = fleet.recv(timeout=10.0)
        deadline = time.monotonic() + 10.0
        while server.table.sessions() and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the server to expire the idle env
        assert not server.table.sessions()
        _answer(fleet, batch)  # 404 env_not_found, same incarnation
        batch = fleet.recv(timeout=10.0)
        assert batch.cut.tolist() == [True, True]
        batch = fleet.recv(timeout=10.0)
        assert batch.env_ids.tolist() == [0, 1] and batch.present.all()
        assert not batch.cut.any()
        assert fleet.hosts[0].up and fleet.hosts[0].times_down == 0


# ------------------------------------------------------------------------ closing


@pytest.mark.timeout(30)
def test_close_does_not_wait_for_a_hung_host(env_server):
    gate, entered = threading.Event(), threading.Event()
    server = EnvServer(register={"Sim-v0": lambda: GatedCartPole(gate, entered)})
    url = env_server(server)
    try:
        fleet = Fleet.from_urls([url], "Sim-v0", envs_per_host=1, step_timeout=60.0)
        fleet.async_reset(seed=0)
        batch = fleet.recv(timeout=10.0)
        _answer(fleet, batch)  # this step hangs until the gate opens
        assert entered.wait(10.0)
        fleet.close()  # returns long before the step could time out
        assert fleet.closed
        with pytest.raises(RuntimeError, match="closed"):
            fleet.recv(timeout=0)
    finally:
        gate.set()


def test_close_frees_every_server_env(env_server):
    server = EnvServer(register=PETTINGZOO_ENVS)
    url = env_server(server)
    fleet = Fleet.from_urls([url], LANDMARKS, envs_per_host=3, **FAST)
    fleet.reset(seed=0)
    assert len(server.table.sessions()) == 3
    fleet.close()
    assert server.table.sessions() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("fleet-")]
