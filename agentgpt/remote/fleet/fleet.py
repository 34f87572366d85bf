"""``Fleet``: many env servers driven as one vector env, asynchronously and fault-tolerantly.

A trainer that steps remote envs in lockstep waits for the slowest host every step, and
stalls when one dies. A fleet keeps a request in flight on every remote env at once and
hands over whichever have answered (EnvPool's ``send``/``recv``), so a slow host only
delays its own envs and a dead one only loses its own unfinished steps: they are *cut*,
reported once, and the host is retried in the background until it returns.

Everything the trainer sees is decided on the trainer's own thread, inside ``recv`` and
``send``: worker threads (one per remote env while it is made, and for good over HTTP,
see :mod:`.streams`) and host probes (see :mod:`.hosts`) only report events on one queue
(:mod:`.events`). Steps over the streaming session are sent and read on the trainer's
thread itself, which waits on that queue and the streams' sockets at once. So between a
``recv`` and the next call, nothing about the slots changes under the caller.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agentgpt.core.batching import RowStore, rows_of, take
from agentgpt.core.busy_poll import BusyPoll, client_limit_s
from agentgpt.remote.connect import TransportKind
from agentgpt.remote.fleet.arguments import check_arguments
from agentgpt.remote.fleet.batch import BatchBuilder, FleetBatch, empty_batch
from agentgpt.remote.fleet.discovery import discover
from agentgpt.remote.fleet.events import EventQueue, readable
from agentgpt.remote.fleet.faults import Fault, FleetDownError
from agentgpt.remote.fleet.hosts import Backoff, Host, HostBack, HostStatus, Prober
from agentgpt.remote.fleet.infos import merge_infos, scatter_info
from agentgpt.remote.fleet.streams import Answer, Endpoint, Failed, Made, StreamSpec, StreamWorker
from agentgpt.remote.transport import Encoding

__all__ = ["Fleet"]

logger = logging.getLogger("agentgpt.fleet")

# What a stream (one remote env) is doing, as the fleet's thread sees it.
_DOWN = "down"  # nothing runs: its host is down, or it was never made
_STARTING = "starting"  # a worker is making it (and, after a fault, resetting it)
_IDLE = "idle"  # made, not reset yet
_RUNNING = "running"  # a reset or step is in flight
_WAITING = "waiting"  # answered; collecting the caller's actions for its next step

_FRESH = object()
#: The most ``close()`` waits for workers to free their envs (each ``/close`` is bounded by
#: the short timeout anyway; on a healthy host it takes milliseconds).
_CLOSE_WAIT = 2.0  # "draw a fresh seed" (``None`` is a seed value: random)


class _Stream:
    """The fleet's record of one remote env and its slots (a contiguous range)."""

    def __init__(
        self,
        index: int,
        host: Host,
        first: int,
        spec: StreamSpec,
        env_index: int,
        env_count: int,
    ) -> None:
        self.index = index
        self.host = host
        self.first = first
        self.count = spec.count
        self.env_ids = np.arange(first, first + spec.count, dtype=np.int64)
        self.slice = slice(first, first + spec.count)
        self.spec = spec
        #: Index of its first server-side env, for seeds: sub-env ``j`` gets ``seed +
        #: env_index + j``, exactly as one local vector env of all the fleet's envs.
        self.env_index = env_index
        self.env_count = env_count
        self.worker: StreamWorker | None = None
        #: Number of the request whose answer is expected; older answers are dropped.
        self.ticket = 0
        self.state = _DOWN
        self.env_key: str | None = None
        self.actions = RowStore(spec.single_action_space, spec.count)
        #: Slots still owing an action before the step can go out.
        self.missing = 0
        #: When the last step went out, and a running mean of how long steps take to be
        #: answered (``recv(max_wait=...)`` waits only for envs expected soon).
        self.sent_at = 0.0
        self.turnaround: float | None = None
        #: Multi-agent: agents that get an action (present, and their last step did not
        #: end them); every other agent is sent ``null``.
        self.needs: np.ndarray | None = None
        self.failures = 0
        self.streak = 0
        self.restarted_at = 0.0


class Fleet(VectorEnv):
    """Envs on many env servers ("hosts") as one vector env of ``num_envs`` slots.

    A *slot* is one sequence the trainer sees: a sub-env of a host's vector env, or one
    agent (in ``possible_agents`` order) of a multi-agent env. Slots are numbered hosts in
    URL order, envs in order, sub-envs or agents in order, and keep their numbers for the
    fleet's life. Build one with :meth:`from_urls`.

    The asynchronous API: :meth:`async_reset`, then repeatedly :meth:`recv` (the slots
    with news) and :meth:`send` (actions for those slots). The synchronous
    ``reset``/``step`` of :class:`gymnasium.vector.VectorEnv` is built on it. Autoreset is
    Gymnasium's next-step mode. Faults (a host down, slow or restarted, an env raising) cut
    the affected slots' trajectories and never stop the fleet; see ``docs/fleet.md``.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        urls: Sequence[str],
        env_id: str,
        *,
        envs_per_host: int | Sequence[int] = 16,
        api_key: str | None = None,
        seed: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        encoding: Encoding = "msgpack",
        step_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        fleet_timeout: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        locators: Sequence[Callable[[], str]] | None = None,
        transport: TransportKind | None = None,
        connectors: Sequence[Callable[[float], Any]] | None = None,
    ) -> None:
        """A fleet of ``env_id`` envs on the env servers at ``urls``.

        ``envs_per_host``: envs on every host, or one number per host (for multi-agent
        envs each env adds one slot per agent). ``seed``: sub-env ``i`` of the whole fleet
        is seeded ``seed + i`` on its first reset (multi-agent: env ``i``); envs made again
        after a fault get seeds never used before. ``step_timeout``: seconds a host may take
        to answer before it counts as down; ``connect_timeout`` bounds connecting, health
        probes and closing. ``fleet_timeout``: how long every host may be down before
        :meth:`recv` raises :class:`FleetDownError`. Down hosts are probed after
        ``backoff_initial`` seconds, doubling up to ``backoff_max``. ``locators``: for
        hosts whose address can change (pods behind a headless Service), one callable
        per host that gives the URL to connect to now (``urls`` then only name the hosts
        in logs); see :attr:`Endpoint.locate <agentgpt.remote.fleet.streams.Endpoint>`.
        ``transport``: how each env's requests travel (``"auto"``, ``"http"``,
        ``"stream"``; default: :data:`~agentgpt.remote.connect.DEFAULT_TRANSPORT`).
        ``connectors``: for hosts that dial in to this process (``train --listen``), one
        callable per host giving a transport over its connection, for a timeout.

        Hosts that cannot be reached start down and are retried; building fails with
        :class:`FleetDownError` only when no host answers within ``fleet_timeout``. Hosts
        serving different spaces are a ``ValueError``.
        """
        self._hosts: list[Host] = []
        self._streams: list[_Stream] = []
        self._events = EventQueue(BusyPoll(client_limit_s()))
        self._pending: deque[Any] = deque()
        self._shut = False
        urls, counts, seed = check_arguments(
            urls,
            envs_per_host,
            seed,
            step_timeout,
            connect_timeout,
            fleet_timeout,
            backoff_initial,
            backoff_max,
        )
        self.env_id = env_id
        self.fleet_timeout = float(fleet_timeout)
        self._backoff_initial = float(backoff_initial)
        self._backoff_max = float(backoff_max)
        short_timeout = min(float(connect_timeout), float(step_timeout))
        self._short_timeout = short_timeout
        if locators is not None and len(locators) != len(urls):
            raise ValueError(f"locators has {len(locators)} entries for {len(urls)} hosts")
        if connectors is not None and len(connectors) != len(urls):
            raise ValueError(f"connectors has {len(connectors)} entries for {len(urls)} hosts")
        endpoints = [
            Endpoint(
                url,
                api_key,
                encoding,
                float(step_timeout),
                float(connect_timeout),
                short_timeout,
                None if locators is None else locators[index],
                transport,
                None if connectors is None else connectors[index],
            )
            for index, url in enumerate(urls)
        ]
        try:
            self._setup(endpoints, counts, env_id, env_kwargs, seed)
        except BaseException:
            self._shutdown()
            raise

    @classmethod
    def from_urls(cls, urls: Sequence[str], env_id: str, **options: Any) -> Fleet:
        """A fleet of ``env_id`` envs on the env servers at ``urls``; ``options`` are the
        constructor's keyword arguments (see :class:`Fleet`)."""
        return cls(urls, env_id, **options)

    # ------------------------------------------------------------------ set-up

    def _setup(
        self,
        endpoints: list[Endpoint],
        counts: list[int],
        env_id: str,
        env_kwargs: dict[str, Any] | None,
        seed: int | None,
    ) -> None:
        found = discover(
            endpoints,
            env_id,
            env_kwargs,
            fleet_timeout=self.fleet_timeout,
            backoff=Backoff(self._backoff_initial, self._backoff_max),
        )
        self.multi_agent: bool = found.multi_agent
        #: Agent names of a multi-agent env (slot ``k`` of an env is agent ``k``).
        self.possible_agents: list[str] | None = found.agents
        self.single_observation_space = found.observation_space
        self.single_action_space = found.action_space
        specs: dict[tuple[int, int], StreamSpec] = {}
        slot = env_index = 0
        for index, (endpoint, count) in enumerate(zip(endpoints, counts, strict=True)):
            sizes = [len(found.agents)] * count if found.agents else [count]
            host = Host(
                index,
                endpoint,
                range(slot, slot + sum(sizes)),
                Backoff(self._backoff_initial, self._backoff_max),
            )
            for size in sizes:
                spec = specs.get((index, size))
                if spec is None:
                    spec = specs[index, size] = StreamSpec(
                        endpoint,
                        env_id,
                        env_kwargs,
                        found.multi_agent,
                        size,
                        found.observation_space,
                        found.action_space,
                    )
                env_count = 1 if found.multi_agent else size
                stream = _Stream(len(self._streams), host, slot, spec, env_index, env_count)
                host.streams.append(stream)
                self._streams.append(stream)
                slot += size
                env_index += env_count
            self._hosts.append(host)

        self.num_envs = slot
        self.observation_space = batch_space(self.single_observation_space, slot)
        self.action_space = batch_space(self.single_action_space, slot)
        self._server_envs = env_index
        self._seed_cursor = None if seed is None else seed + env_index
        if seed is not None:
            self.action_space.seed(seed)
        self._stream_of = np.empty(slot, dtype=np.int64)
        for stream in self._streams:
            self._stream_of[stream.slice] = stream.index
        #: The caller owes an action for the slot (it came in a batch, not cut).
        self._awaiting = np.zeros(slot, dtype=np.bool_)
        #: The slot has a trajectory the caller knows of (a cut must be reported).
        self._live = np.zeros(slot, dtype=np.bool_)
        #: A cut happened and is not reported yet.
        self._cut_pending = np.zeros(slot, dtype=np.bool_)
        self._marks = np.zeros(slot, dtype=np.bool_)  # scratch, always all False
        self._last_obs = RowStore(self.single_observation_space, slot)
        self._sync_started = False
        #: Streams an ``async_reset`` reset, with its ticket, until all have answered.
        self._reset_tickets: dict[int, int] = {}
        self._make_first_envs(found.unreachable, seed)

    def _make_first_envs(self, unreachable: dict[int, str], seed: int | None) -> None:
        """Make every env on the hosts that answered (in parallel); wait until all did."""
        for host in self._hosts:
            if host.index in unreachable:
                host.mark_down(unreachable[host.index])
                logger.warning(
                    "env host %s is unreachable (%s); retrying it with backoff",
                    host.label,
                    host.reason,
                )
                self._probe(host)
                continue
            for stream in host.streams:
                first_seed = None if seed is None else seed + stream.env_index
                self._start_stream(stream, seed=first_seed, reset=False)
        waiting = {s.worker for s in self._streams if s.worker is not None}
        while waiting:
            event = self._events.get()  # only threads run now: no stream is handed over yet
            if isinstance(event, Made | Failed) and event.worker in waiting:
                waiting.discard(event.worker)
                self._apply(event, None)
            else:
                self._pending.append(event)
            waiting = {w for w in waiting if w.owner.worker is w}

    # ------------------------------------------------------------------ public state

    @property
    def hosts(self) -> list[HostStatus]:
        """A snapshot of every host: url, up, incarnation, slots, times_down, downtime and
        the reason it last went down."""
        return [host.status() for host in self._hosts]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Fleet({self.env_id!r}, hosts={len(self._hosts)}, num_envs={self.num_envs})"

    # ------------------------------------------------------------------ async API

    def async_reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Reset every env that runs; the first observations arrive through :meth:`recv`
        (present, reward 0, no flags). With ``seed``, sub-env ``i`` gets ``seed + i``.
        ``options`` go to every env's reset as they are. Envs being made again after a
        fault are left alone: they reset on their own and report like the others."""
        self._check_open()
        self._reset_streams(seed, options)
        self._reset_tickets = {
            stream.index: stream.ticket for stream in self._streams if stream.state == _RUNNING
        }

    def recv(self, timeout: float | None = None, *, max_wait: float = 0.0) -> FleetBatch:
        """Wait until at least one slot has news, then return all news there is.

        News comes after :meth:`async_reset` and :meth:`send` (and from envs made again
        after a fault), so without a ``timeout`` call those first. With ``timeout``
        (seconds), an empty batch when nothing came in that time. Raises
        :class:`FleetDownError` once every host has been down for longer than
        ``fleet_timeout``.

        ``max_wait`` (seconds) trades a little latency for fuller batches: once the first
        answer is in, wait up to that long for the other envs expected to answer within
        it, judged from each env's recent turnaround. Envs that are slower than that
        (a slow host) are not waited for, so they cost nothing.

        The first observations after :meth:`async_reset` come in one batch: every env it
        reset is waited for (up to ``timeout``; a fault ends the wait too). Envs that
        start together stay in step, so a trainer acting on what comes in acts on them
        all at once, at the same position of their rollout rows.
        """
        self._check_open()
        self._pending.extend(self._drain(came_back=True))
        if max_wait > 0 or self._reset_tickets:
            self._await_batch(max_wait, timeout)
        return self._receive(timeout, None)

    def _await_batch(self, max_wait: float, timeout: float | None) -> None:
        """Queue events until every env expected within ``max_wait`` of the first answer
        has answered (or the wait, or ``timeout``, is over)."""
        pending = self._pending
        now = time.monotonic()
        deadline = None if timeout is None else now + max(0.0, float(timeout))
        while not pending:
            if self._cut_pending.any():
                return  # cuts are news of their own
            wait = self._time_until_fleet_down()  # raises once every host is down too long
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait = remaining if wait is None else min(wait, remaining)
            pending.extend(self._wait_events(wait))
        first = time.monotonic()
        limit = first + max_wait if deadline is None else min(first + max_wait, deadline)
        while True:
            pending.extend(self._drain())
            if not all(isinstance(e, Answer) for e in pending):
                return  # faults and remakes are delivered at once
            answered = {id(e.worker.owner) for e in pending}
            resetting = self._still_resetting(answered)
            if resetting:
                wait = None if deadline is None else deadline - time.monotonic()
            else:
                expected = [
                    s
                    for s in self._streams
                    if s.state == _RUNNING
                    and id(s) not in answered
                    and s.sent_at + (s.turnaround or 0.0) <= limit
                ]
                if not expected:
                    return
                wait = limit - time.monotonic()
            if wait is not None and wait <= 0:
                return
            news = self._wait_events(wait)
            if not news:
                return
            pending.extend(news)

    def _still_resetting(self, answered: set[int]) -> bool:
        """Whether an env that :meth:`async_reset` reset still owes its first answer (one
        in ``answered``, queued, does not); forgets the reset once none does."""
        tickets = self._reset_tickets
        if not tickets:
            return False
        for stream in self._streams:
            if (
                tickets.get(stream.index) == stream.ticket
                and stream.state == _RUNNING
                and id(stream) not in answered
            ):
                return True
        tickets.clear()
        return False

    def send(self, actions: Any, env_ids: Any) -> None:
        """Actions (batched values of ``single_action_space``, in ``env_ids`` order) for
        slots a batch returned with ``cut`` False, absent agents included (their action is
        ignored). A remote env steps once every slot of it has its action, so actions may
        come over several calls. An action for a slot that is not awaiting one (never
        returned, cut, already sent) is a ``ValueError``."""
        self._check_open()
        ids = np.asarray(env_ids)
        if ids.size == 0:
            return
        if ids.dtype.kind not in "iu":
            raise ValueError(f"env_ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False).reshape(-1)
        n = ids.size
        if ids.min() < 0 or ids.max() >= self.num_envs:
            raise ValueError(f"env_ids must lie in [0, {self.num_envs}), got {ids.tolist()}")
        awaiting = self._awaiting[ids]
        if not awaiting.all():
            raise ValueError(
                f"slot(s) {ids[~awaiting][:8].tolist()} are not awaiting an action: send one"
                " action for each slot recv() returned with cut False, once"
            )
        if n > 1:
            marks = self._marks  # cheaper than np.unique on this hot path
            marks[ids] = True
            distinct = int(np.count_nonzero(marks))
            marks[ids] = False
            if distinct != n:
                raise ValueError(f"env_ids repeats slots: {ids.tolist()}")
        space = self.single_action_space
        actions = rows_of(space, actions, n)
        self._awaiting[ids] = False
        stream_of = self._stream_of[ids]
        first = int(stream_of[0])
        if n == 1 or (stream_of == first).all():
            self._take_actions(self._streams[first], ids, actions)
            return
        order = np.argsort(stream_of, kind="stable")
        ordered = stream_of[order]
        for group in np.split(order, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1):
            stream = self._streams[int(stream_of[group[0]])]
            self._take_actions(stream, ids[group], take(space, actions, group))

    # ------------------------------------------------------------------ sync API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env and wait for its first observations.

        Slots without one (host down, env being made again) repeat their last observation
        (zeros before the first) and are marked in ``info["down"]``; see :meth:`step`.
        """
        self._check_open()
        expected = self._reset_streams(seed, options)
        if seed is not None:
            super().reset(seed=int(seed))
        self._sync_started = True
        obs, _, _, _, info = self._compose(self._gather(expected))
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every slot that runs with its action (a batch of ``num_envs``) and wait
        for all of them.

        Slots that do not run ignore their action. A slot whose step was cut reports
        ``truncated=True`` with its last observation repeated; while its env is down it
        reports its last observation, reward 0 and no flags; once its env is back it
        reports the first observation of a new episode (reward 0, no flags), as after
        any next-step autoreset. ``info["down"]`` (mask ``info["_down"]``) marks the slots
        not running after this step; multi-agent fleets add ``info["present"]`` (agents
        that observed; absent ones repeat their last observation).
        """
        self._check_open()
        if not self._sync_started:
            raise RuntimeError("call reset() before step()")
        space = self.single_action_space
        actions = rows_of(space, actions, self.num_envs)
        expected = self._awaiting.copy()
        ids = np.flatnonzero(expected)
        if ids.size:
            self.send(take(space, actions, ids), ids)
        return self._compose(self._gather(expected))

    def close_extras(self, **kwargs: Any) -> None:
        """Close every server env (best effort, short timeout) and stop every thread."""
        self._shutdown()

    # ------------------------------------------------------------------ internals: API

    def _check_open(self) -> None:
        if self._shut:
            raise RuntimeError("this fleet is closed")

    def _reset_streams(self, seed: Any, options: dict[str, Any] | None) -> np.ndarray:
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
                raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
            seed = int(seed)
            # Seeds of later remakes continue after every seed this reset uses.
            cursor = seed + self._server_envs
            self._seed_cursor = max(cursor, self._seed_cursor or 0)
        expected = np.zeros(self.num_envs, dtype=np.bool_)
        for stream in self._streams:
            if stream.state not in (_IDLE, _RUNNING, _WAITING):
                continue
            stream.ticket += 1  # an answer still in flight is dropped
            stream.state = _RUNNING
            stream.missing = 0
            stream.sent_at = time.monotonic()
            stream.worker.reset(
                stream.ticket, None if seed is None else seed + stream.env_index, options
            )
            self._awaiting[stream.slice] = False
            expected[stream.slice] = True
        return expected

    def _take_actions(self, stream: _Stream, ids: np.ndarray, actions: Any) -> None:
        if stream.state != _WAITING:
            return  # cut since the caller saw it: the cut is reported next, the action dropped
        stream.actions.put(ids - stream.first, actions)
        stream.missing -= ids.size
        if stream.missing == 0:
            stream.ticket += 1
            stream.state = _RUNNING
            stream.sent_at = time.monotonic()
            stream.worker.step(stream.ticket, stream.actions.value(), stream.needs)

    def _receive(self, timeout: float | None, exclude: np.ndarray | None) -> FleetBatch:
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        while True:
            batch = self._collect(exclude)
            if batch is not None:
                return batch
            wait = self._time_until_fleet_down()
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return empty_batch(self.single_observation_space)
                wait = remaining if wait is None else min(wait, remaining)
            self._pending.extend(self._wait_events(wait))

    def _collect(self, exclude: np.ndarray | None) -> FleetBatch | None:
        """Apply every event that came in; the batch of rows they make, if any."""
        pending = self._pending
        pending.extend(self._drain())
        if not pending and not self._cut_pending.any():
            return None
        builder = BatchBuilder(self.single_observation_space, self.num_envs, exclude)
        self._pending = deque()
        try:
            while pending:
                self._apply(pending.popleft(), builder)
        finally:
            self._pending.extend(builder.deferred)
            self._pending.extend(pending)
        cut_pending = self._cut_pending
        if cut_pending.any():
            ids = np.flatnonzero(cut_pending & ~builder.taken)
            if ids.size:
                cut_pending[ids] = False
                self._live[ids] = False
                self._awaiting[ids] = False
                builder.add_cuts(ids)
        return builder.finish()

    def _drain(self, came_back: bool = False) -> list[Any]:
        """Every event there is now, answers over handed-over streams included.

        ``came_back``: the caller is just back (from acting, or from training between
        rollouts), so the answers read now may have waited unread for a while; their read
        time says nothing of how fast their host is, and they are no turnaround sample.
        """
        handed_over = self._handed_over()
        news = []
        if handed_over:
            ready = readable([sock for _, sock in handed_over], 0.0)
            news = self._read_streams(handed_over, ready, came_back)
        return self._take_queued(news)

    def _wait_events(self, timeout: float | None) -> list[Any]:
        """The events that come within ``timeout`` seconds (``None``: until one does);
        empty if none. Waits on the event queue and on the sockets of handed-over streams
        at once, and reads only the streams whose sockets have news."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            handed_over = self._handed_over()
            if not handed_over:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    return [self._events.get(timeout=wait)]
                except queue.Empty:
                    return []
            wake = deadline
            for worker, _ in handed_over:
                due = worker.next_deadline()
                if due is not None and (wake is None or due < wake):
                    wake = due
            ready = self._events.wait(
                [sock for _, sock in handed_over],
                None if wake is None else max(0.0, wake - time.monotonic()),
            )
            news = self._take_queued(self._read_streams(handed_over, ready))
            if news or (deadline is not None and time.monotonic() >= deadline):
                return news

    def _handed_over(self) -> list[tuple[StreamWorker, Any]]:
        """The workers whose streams this thread drives and that await an answer, with
        the socket each awaits it on."""
        pairs = []
        for stream in self._streams:
            worker = stream.worker
            sock = None if worker is None else worker.waiting_socket()
            if sock is not None:
                pairs.append((worker, sock))
        return pairs

    @staticmethod
    def _read_streams(
        handed_over: list[tuple[StreamWorker, Any]], ready: set[int], came_back: bool = False
    ) -> list[Any]:
        """The answers of the streams whose sockets are readable, and the failures of
        those whose oldest request is overdue."""
        news: list[Any] = []
        now = time.monotonic()
        for worker, sock in handed_over:
            due = worker.next_deadline()
            if sock.fileno() in ready or (due is not None and due <= now):
                news.extend(worker.poll(came_back))
        return news

    def _take_queued(self, news: list[Any]) -> list[Any]:
        while True:
            try:
                news.append(self._events.get_nowait())
            except queue.Empty:
                return news

    def _time_until_fleet_down(self) -> float | None:
        """Seconds until every host will have been down ``fleet_timeout`` (``None``: some
        host serves); raises :class:`FleetDownError` once they have."""
        latest = 0.0
        for host in self._hosts:
            if host.down_since is None:
                return None
            latest = max(latest, host.down_since)
        now = time.monotonic()
        left = latest + self.fleet_timeout - now
        if left < 0:
            hosts = ", ".join(
                f"{host.label} (down {now - host.down_since:.0f} s: {host.reason})"
                for host in self._hosts
            )
            raise FleetDownError(
                f"every env host has been down for more than {self.fleet_timeout:g} s: {hosts}"
            )
        return left + 1e-3

    def _gather(self, expected: np.ndarray) -> list[FleetBatch]:
        """Batches until every ``expected`` slot had a row (at least one batch)."""
        got = np.zeros(self.num_envs, dtype=np.bool_)
        batches: list[FleetBatch] = []
        self._pending.extend(self._drain(came_back=True))
        while not batches or (expected & ~got).any():
            batch = self._receive(None, got)
            got[batch.env_ids] = True
            batches.append(batch)
        return batches

    def _compose(
        self, batches: list[FleetBatch]
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        space = self.single_observation_space
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        present = np.zeros(n, dtype=np.bool_)
        for batch in batches:
            ids = batch.env_ids
            rows = np.flatnonzero(batch.present)
            if rows.size:
                self._last_obs.put(ids[rows], take(space, batch.obs, rows))
            reward[ids] = batch.reward
            terminated[ids] = batch.terminated
            truncated[ids] = batch.truncated | batch.cut
            present[ids] = batch.present
        infos = [(batch.info, batch.env_ids.size) for batch in batches]
        info: dict[str, Any] = {}
        if any(i for i, _ in infos):
            ids = np.concatenate([batch.env_ids for batch in batches])
            info = scatter_info(merge_infos(infos), ids, n)
        down = ~self._live
        if down.any():
            info["down"] = down
            info["_down"] = down.copy()
        if self.multi_agent:
            info["present"] = present
            info["_present"] = np.ones(n, dtype=np.bool_)
        return self._last_obs.value(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ internals: events

    def _apply(self, event: Any, builder: BatchBuilder | None) -> None:
        if isinstance(event, Answer):
            self._on_answer(event, builder)
        elif isinstance(event, Made):
            self._on_made(event)
        elif isinstance(event, Failed):
            self._on_failed(event)
        elif isinstance(event, HostBack):
            self._on_host_back(event)

    def _on_answer(self, event: Answer, builder: BatchBuilder | None) -> None:
        stream: _Stream = event.worker.owner
        if stream.worker is not event.worker or event.ticket != stream.ticket:
            return  # an answer nobody waits for any more (reset since, or cut)
        took = event.worker.answered_at - stream.sent_at
        if 0 < took < 60 and stream.sent_at > 0 and not event.worker.read_on_return:
            last = stream.turnaround
            stream.turnaround = took if last is None else 0.8 * last + 0.2 * took
        assert builder is not None
        window = stream.slice
        if (
            stream.index in builder.blocked
            or builder.taken[window].any()
            or self._cut_pending[window].any()
        ):
            # One row per slot per batch, and a cut before the news after it.
            builder.blocked.add(stream.index)
            builder.deferred.append(event)
            return
        rows = event.rows
        builder.add(stream.env_ids, rows)
        self._live[window] = True
        self._awaiting[window] = True
        stream.state = _WAITING
        stream.missing = stream.count
        if self.multi_agent:
            stream.needs = rows.present & ~(rows.terminated | rows.truncated)
        host = stream.host
        if host.up:
            host.mark_serving()

    def _on_made(self, event: Made) -> None:
        stream: _Stream = event.worker.owner
        if stream.worker is not event.worker:
            return
        stream.env_key = event.env_key
        stream.host.incarnation = event.incarnation
        if stream.state == _STARTING and not event.worker.reset_after_make:
            stream.state = _IDLE

    def _on_failed(self, event: Failed) -> None:
        stream: _Stream = event.worker.owner
        if stream.worker is not event.worker:
            return
        if event.fault is Fault.HOST:
            self._host_down(stream.host, event.reason)
        elif event.fault is Fault.ENV:
            self._env_fault(stream, event)
        else:
            stream.worker = None
            stream.state = _DOWN
            raise event.error

    def _on_host_back(self, event: HostBack) -> None:
        host: Host = event.prober.owner
        if host.prober is not event.prober or host.up:
            return
        host.prober = None
        first_contact = host.incarnation is None
        restarted = event.incarnation is None or event.incarnation != host.incarnation
        host.up = True
        host.incarnation = event.incarnation
        for stream in host.streams:
            # Keys of a dead server process are never used again, not even to close them.
            self._start_stream(stream, close_first=None if restarted else stream.env_key)
        if first_contact:
            how = "reached for the first time"
        elif restarted:
            how = "its server restarted"
        else:
            how = "the same server process"
        logger.info(
            "env host %s is back (%s); making its %d env(s) again",
            host.label,
            how,
            host.server_envs,
        )

    def _host_down(self, host: Host, reason: str) -> None:
        if not host.up:
            return
        host.mark_down(reason)
        cut = sum(self._stop_stream(stream) for stream in host.streams)
        logger.warning(
            "env host %s is down (%s); %d slot(s) cut, retrying it with backoff",
            host.label,
            reason,
            cut,
        )
        self._probe(host)

    def _env_fault(self, stream: _Stream, event: Failed) -> None:
        cut = self._stop_stream(stream)
        now = time.monotonic()
        stream.failures += 1
        # Failing again soon after being made again is "the same env keeps failing".
        soon = now - stream.restarted_at < self._backoff_max
        stream.streak = stream.streak + 1 if stream.failures > 1 and soon else 1
        delay = 0.0
        if stream.streak > 1:
            delay = min(self._backoff_initial * 2.0 ** (stream.streak - 2), self._backoff_max)
        key = event.worker.env_key or "(not made)"
        failures = stream.failures
        if failures == 1:
            logger.warning(
                "env %s on %s failed (%s); %d slot(s) cut, making it again",
                key,
                stream.host.label,
                event.reason,
                cut,
            )
        elif failures & (failures - 1) == 0:  # 2, 4, 8, ...: a count, never a flood
            logger.warning(
                "env on %s keeps failing: %d failures so far, the latest in env %s (%s);"
                " making it again in %.3g s",
                stream.host.label,
                failures,
                key,
                event.reason,
                delay,
            )
        else:
            logger.debug("env %s on %s failed again (%s)", key, stream.host.label, event.reason)
        self._start_stream(stream, delay=delay)
        stream.restarted_at = now + delay

    # ------------------------------------------------------------------ internals: threads

    def _start_stream(
        self,
        stream: _Stream,
        *,
        seed: Any = _FRESH,
        reset: bool = True,
        close_first: str | None = None,
        delay: float = 0.0,
    ) -> None:
        if seed is _FRESH:
            seed = self._fresh_seed(stream.env_count)
        stream.ticket += 1
        worker = StreamWorker(
            stream.spec,
            self._events,
            stream,
            seed=seed,
            ticket=stream.ticket,
            reset_after_make=reset,
            close_first=close_first,
            delay=delay,
            name=f"fleet-env:{stream.host.label}#{stream.index}",
        )
        stream.worker = worker
        stream.state = _STARTING
        stream.env_key = None
        stream.missing = 0
        worker.start()

    def _stop_stream(self, stream: _Stream) -> int:
        """Give up the stream's worker; its live slots get a cut. Returns how many."""
        if stream.worker is not None:
            stream.worker.stop(close_env=False)
            stream.worker = None
        window = stream.slice
        live = self._live[window]
        self._cut_pending[window] |= live
        stream.state = _DOWN
        stream.missing = 0
        stream.needs = None
        return int(live.sum())

    def _probe(self, host: Host) -> None:
        host.prober = Prober(host.endpoint, self._events, host, host.backoff)
        host.prober.start()

    def _fresh_seed(self, count: int) -> int | None:
        if self._seed_cursor is None:
            return None
        seed = self._seed_cursor
        self._seed_cursor += count
        return seed

    def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        probers = [host.prober for host in self._hosts if host.prober is not None]
        for host in self._hosts:
            host.prober = None
        for prober in probers:
            prober.stop()
        workers = []
        for stream in self._streams:
            if stream.worker is not None:
                workers.append(stream.worker)
                stream.worker = None
            stream.state = _DOWN
        for worker in workers:
            worker.stop(close_env=True)
        # Workers on healthy hosts close their envs in milliseconds; one stuck on a hung
        # host is a daemon and is not waited for.
        deadline = time.monotonic() + min(self._short_timeout, _CLOSE_WAIT)
        for thread in [*workers, *probers]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._pending.clear()
        self._events.close()  # a thread that reports later finds nobody to wake
