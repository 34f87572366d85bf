"""One remote env of a fleet and the worker that talks to it.

A *stream* is one server-side env with at most one request in flight: a ``/make_vec``
vector env for single-agent envs, one ``/make`` env for multi-agent ones. Each stream has
its own worker and its own transport (a keep-alive HTTP connection or a WebSocket,
:mod:`agentgpt.remote.connect`; transports are not thread-safe, and one slow answer must
never hold up another env). The worker's thread makes its env. Over HTTP it then runs the
resets and steps the fleet hands it, decodes each answer into NumPy rows (off the
trainer's thread) and reports everything as events on one queue shared by the fleet. A
streaming session needs no thread once the env is made: the thread hands the connection
to the fleet's thread and ends, and the fleet sends requests and reads answers through
the worker's :meth:`StreamWorker.poll` on its own thread, where a step's round trip then
costs no hop between threads. A worker never decides anything: a failure is reported with
its :class:`~agentgpt.remote.fleet.faults.Fault` kind and the worker exits; the fleet
cuts, remakes or raises. A remade env gets a new worker, so a request stuck on a dead host
never delays its replacement.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from agentgpt.core.batching import is_array_space, single_values
from agentgpt.protocol import routes
from agentgpt.protocol.answers import (
    MadeAnswer,
    health_incarnation,
    read_env_key,
    read_made,
    read_reset,
    read_step,
)
from agentgpt.protocol.requests import (
    close_request,
    make_request,
    make_vec_request,
    reset_request,
    step_request,
)
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.connect import AutoTransport, TransportKind, open_transport
from agentgpt.remote.errors import RemoteEnvError, RemoteTimeout, remote_error
from agentgpt.remote.fleet.events import EventQueue
from agentgpt.remote.fleet.faults import Fault, classify, describe
from agentgpt.remote.fleet.infos import agent_infos
from agentgpt.remote.infos import vector_info_from_wire
from agentgpt.remote.stream import StreamTransport
from agentgpt.remote.transport import Encoding
from agentgpt.wire import value_from_wire, value_to_wire

__all__ = [
    "Answer",
    "Endpoint",
    "Failed",
    "Made",
    "StreamRows",
    "StreamSpec",
    "StreamWorker",
    "close_quietly",
    "display_url",
]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one env server: URL, key, encoding and timeouts."""

    url: str
    api_key: str | None = field(repr=False)
    encoding: Encoding
    step_timeout: float
    connect_timeout: float
    #: Bound on the best-effort requests (``/close``, ``/health``): they must never
    #: hold up shutting down or recovering.
    short_timeout: float
    #: For a host whose address can change (one pod of a headless Service): gives the
    #: URL to use now, for every new connection. It raises
    #: :class:`~agentgpt.remote.errors.UnavailableError` while the host has no address;
    #: the fleet treats that like a host that is down. None: always :attr:`url`.
    locate: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    #: How requests travel (:mod:`agentgpt.remote.connect`); None: the default.
    kind: TransportKind | None = None
    #: For a host that dials in (``train --listen``): gives a transport over its current
    #: connection, for a timeout in seconds; None: connect to :attr:`url`.
    connect: Callable[[float], BaseTransport] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def label(self) -> str:
        """The URL as logs and messages show it (never with credentials)."""
        return display_url(self.url)

    def reason(self, error: BaseException) -> str:
        """:func:`describe` of ``error``, with this host's URL shown as :attr:`label`."""
        return describe(error).replace(self.url, self.label)

    def transport(self, short: bool = False) -> BaseTransport:
        """A new transport to the host; never raises: a host that has no address now gets
        a transport whose every request fails as a down host's would. The best-effort
        requests (``short``: probes, closes) go over HTTP, one request each."""
        timeout = self.short_timeout if short else self.step_timeout
        url = self.url
        try:
            if self.connect is not None:
                return self.connect(timeout)
            if self.locate is not None:
                url = self.locate()
            return open_transport(
                url,
                self.api_key,
                kind="http" if short else self.kind,
                encoding=self.encoding,
                timeout=timeout,
                connect_timeout=min(self.connect_timeout, timeout),
                # Worker threads wait in the transport; the fleet's own thread polls
                # (EventQueue.wait) where that pays, never several threads at once.
                busy_poll_us=0,
            )
        except RemoteEnvError as exc:
            return _Unreachable(exc)  # type: ignore[return-value]


class _Unreachable:
    """The transport of a host that has no address now, or did not answer the stream's
    upgrade: every request fails as a host that is down would, so the fleet probes it
    again later."""

    def __init__(self, error: RemoteEnvError) -> None:
        self._error = error

    def post(self, path: str, body: Any) -> dict[str, Any]:
        raise self._error

    def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise self._error

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class StreamSpec:
    """What a worker needs to make and drive its env; shared, never mutated."""

    endpoint: Endpoint
    env_id: str
    env_kwargs: dict[str, Any] | None
    multi_agent: bool
    #: Slots of the stream: sub-envs of the vector env, or agents of the multi-agent env.
    count: int
    single_observation_space: gymnasium.Space
    single_action_space: gymnasium.Space
    batched_observation_space: gymnasium.Space = field(init=False, repr=False, compare=False)
    batched_action_space: gymnasium.Space = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the derived spaces are set once, here.
        batched_obs = batch_space(self.single_observation_space, self.count)
        batched_act = batch_space(self.single_action_space, self.count)
        object.__setattr__(self, "batched_observation_space", batched_obs)
        object.__setattr__(self, "batched_action_space", batched_act)

    def make_route_and_body(self, seed: int | None) -> tuple[str, dict[str, Any]]:
        if self.multi_agent:
            body = make_request(
                self.env_id, seed=seed, env_kwargs=self.env_kwargs, autoreset_mode="next_step"
            )
            return routes.MAKE, body
        body = make_vec_request(
            self.env_id,
            self.count,
            vectorization_mode="sync",
            seed=seed,
            env_kwargs=self.env_kwargs,
            autoreset_mode="next_step",
        )
        return routes.MAKE_VEC, body


class StreamRows(NamedTuple):
    """One answer of a stream, one row per slot."""

    present: np.ndarray
    obs: Any
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, Any]


class _Flight(NamedTuple):
    """A request in flight over a handed-over stream."""

    kind: str
    ticket: int
    request_id: int
    deadline: float


class Made(NamedTuple):
    """The worker's env exists on the server."""

    worker: StreamWorker
    env_key: str
    incarnation: str | None


class Answer(NamedTuple):
    """A reset or step answered; ``ticket`` names the request."""

    worker: StreamWorker
    ticket: int
    rows: StreamRows


class Failed(NamedTuple):
    """A request failed; the worker has exited."""

    worker: StreamWorker
    ticket: int
    fault: Fault
    error: BaseException
    #: For logs: why, in a few words.
    reason: str


_STEP, _RESET, _STOP = "step", "reset", "stop"


def display_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for logs and messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def close_quietly(endpoint: Endpoint, env_key: str) -> None:
    """Best-effort ``/close`` of ``env_key``: a short timeout, every failure ignored."""
    transport = endpoint.transport(short=True)
    try:
        transport.post(routes.CLOSE, close_request(env_key))
    except RemoteEnvError:
        pass
    finally:
        transport.close()


class StreamWorker:
    """The thread behind one stream. See the module docstring.

    ``owner`` is the fleet's record of the stream; the worker only carries it back in its
    events. On start the worker closes ``close_first`` (an env the same server process may
    still hold), waits ``delay`` seconds, makes its env and, with ``reset_after_make``,
    resets it as request ``ticket``.
    """

    def __init__(
        self,
        spec: StreamSpec,
        events: EventQueue,
        owner: Any,
        *,
        seed: int | None,
        ticket: int,
        reset_after_make: bool,
        close_first: str | None = None,
        delay: float = 0.0,
        name: str = "fleet-env",
    ) -> None:
        self.spec = spec
        self.owner = owner
        self.reset_after_make = reset_after_make
        self._events = events
        self._seed = seed
        self._ticket = ticket
        self._close_first = close_first
        self._delay = delay
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._close_env = False
        self._failed = False
        self.env_key: str | None = None
        self.incarnation: str | None = None
        #: When the last answer came (read by the fleet after it takes the answer).
        self.answered_at = 0.0
        #: Whether the fleet's thread read the last answer only as its caller came back,
        #: so that :attr:`answered_at` says nothing of when it came.
        self.read_on_return = False
        self._lists_are_objects = spec.endpoint.encoding == "msgpack"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: Once the thread has handed its stream over (see :meth:`_park`): the transport
        #: to close, the stream under it, and the requests in flight, oldest first.
        self._lock = threading.Lock()
        self._parked: BaseTransport | None = None
        self._direct: StreamTransport | None = None
        self._flights: deque[_Flight] = deque()

    # ---------------------------------------------------------------- fleet side

    def start(self) -> None:
        self._thread.start()

    def step(self, ticket: int, actions: Any, needs: np.ndarray | None) -> None:
        """Send a step with a batch of ``count`` actions (``needs``: live agents)."""
        self._command(_STEP, ticket, actions, needs)

    def reset(self, ticket: int, seed: int | None, options: dict[str, Any] | None) -> None:
        self._command(_RESET, ticket, seed, options)

    def stop(self, close_env: bool) -> None:
        """Exit after the request in flight (whose answer is dropped); with ``close_env``
        free the server's env first (best effort)."""
        with self._lock:
            self._close_env = close_env
            self._stop.set()
            if self._parked is None:
                self._commands.put((_STOP, 0, None, None))
                return
        if not self._take_back():
            return
        if close_env and self.env_key is not None and not self._failed:
            self._thread = threading.Thread(
                target=close_quietly,
                args=(self.spec.endpoint, self.env_key),
                name=self._thread.name,
                daemon=True,
            )
            self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ------------------------------------------------- fleet side, stream handed over

    def waiting_socket(self) -> socket.socket | None:
        """The socket an answer is awaited on, once the stream is handed over."""
        if not self._flights or self._direct is None:
            return None
        return self._direct.connection_socket

    def next_deadline(self) -> float | None:
        """When the oldest request in flight over the handed-over stream times out."""
        return self._flights[0].deadline if self._flights else None

    def poll(self, came_back: bool = False) -> list[Answer]:
        """The answers that have arrived over the handed-over stream, read without
        waiting; a failure (or the oldest request's timeout) ends the stream as a failed
        request ends the thread, and is reported as an event by a thread of its own.
        ``came_back``: the fleet's caller was away until now, so :attr:`answered_at` (the
        read time) may be long after the answer came (:attr:`read_on_return`)."""
        answers: list[Answer] = []
        transport = self._direct
        while self._flights and transport is not None:
            flight = self._flights[0]
            try:
                if not transport.ready(flight.request_id):
                    if time.monotonic() > flight.deadline:
                        raise remote_error(
                            None,
                            "timeout",
                            f"{self.spec.endpoint.label} sent no answer within"
                            f" {self.spec.endpoint.step_timeout:g} s",
                        )
                    break
                answer = transport.answer(flight.request_id)
                rows = self._rows(flight.kind, answer)
            except Exception as exc:
                self._fail_handed_over(flight.ticket, exc)
                break
            self._flights.popleft()
            self.answered_at = time.monotonic()
            self.read_on_return = came_back
            answers.append(Answer(self, flight.ticket, rows))
        return answers

    def _take_back(self) -> bool:
        """End the hand-over: close the stream, forget what was in flight on it. False if
        it was not handed over (or is already taken back)."""
        with self._lock:
            parked, self._parked, self._direct = self._parked, None, None
        self._flights.clear()
        if parked is None:
            return False
        parked.close()
        return True

    def _command(self, kind: str, ticket: int, a: Any, b: Any) -> None:
        with self._lock:
            transport = self._direct
            if transport is None:  # the thread still drives the stream
                self._commands.put((kind, ticket, a, b))
                return
        try:
            route, body = self._request_body(kind, a, b)
            request_id = transport.submit(route, body)
        except Exception as exc:
            self._fail_handed_over(ticket, exc)
            return
        deadline = time.monotonic() + self.spec.endpoint.step_timeout
        self._flights.append(_Flight(kind, ticket, request_id, deadline))

    def _fail_handed_over(self, ticket: int, error: BaseException) -> None:
        """End a handed-over stream after ``error``: report it as the thread would have."""
        if not self._take_back():
            return
        self._thread = threading.Thread(
            target=self._fail, args=(ticket, error), name=self._thread.name, daemon=True
        )
        self._thread.start()

    # ---------------------------------------------------------------- thread side

    def _run(self) -> None:
        endpoint = self.spec.endpoint
        transport: BaseTransport | None = None
        try:
            if self._close_first is not None:
                close_quietly(endpoint, self._close_first)
            if self._delay > 0 and self._stop.wait(self._delay):
                return
            if self._stop.is_set():
                return
            transport = endpoint.transport()
            if not self._make(transport):
                return
            if self.reset_after_make and not self._request(
                transport, _RESET, self._ticket, None, None
            ):
                return
            while True:
                if self._park(transport):
                    transport = None  # the fleet's thread owns it now
                    return
                command = self._commands.get()
                if self._stop.is_set() or not self._request(transport, *command):
                    return
        finally:
            if transport is not None:
                transport.close()
            if self._close_env and self.env_key is not None and not self._failed:
                close_quietly(endpoint, self.env_key)

    def _park(self, transport: BaseTransport) -> bool:
        """Hand a streaming session over to the fleet's thread once no command waits:
        from then on that thread sends the requests and reads the answers itself, with no
        hop to this thread and back (:mod:`.events`). HTTP stays on this thread, whose
        blocking requests never hold up the fleet."""
        stream = transport if isinstance(transport, StreamTransport) else None
        if stream is None and isinstance(transport, AutoTransport):
            chosen = transport.chosen
            stream = chosen if isinstance(chosen, StreamTransport) else None
        if stream is None:
            return False
        with self._lock:
            if self._stop.is_set() or not self._commands.empty():
                return False
            self._parked, self._direct = transport, stream
        return True

    def _make(self, transport: BaseTransport) -> bool:
        route, body = self.spec.make_route_and_body(self._seed)
        try:
            answer = transport.post(route, body)
            self.env_key = read_env_key(answer)  # first: a failure below must free the env
            made = read_made(answer)
            self.incarnation = made.incarnation
            self._check_made(made)
        except Exception as exc:  # every failure is reported; none may kill the thread
            self._fail(self._ticket, exc)
            return False
        if self._stop.is_set():
            # Made after the fleet gave this worker up: free the env right away.
            self._close_env = True
            return False
        self._events.put(Made(self, self.env_key, self.incarnation))
        return True

    def _check_made(self, made: MadeAnswer) -> None:
        spec = self.spec
        if spec.multi_agent:
            observation_spaces = made.observation_space
            action_spaces = made.action_space
            if len(observation_spaces) != spec.count:
                raise ValueError(
                    f"{spec.endpoint.label} made {spec.env_id!r} with {len(observation_spaces)}"
                    f" agents; the fleet's other envs have {spec.count}"
                )
        else:
            observation_spaces = [made.observation_space]
            action_spaces = [made.action_space]
        for observation_space, action_space in zip(observation_spaces, action_spaces, strict=True):
            if (
                observation_space != spec.single_observation_space
                or action_space != spec.single_action_space
            ):
                raise ValueError(
                    f"{spec.endpoint.label} serves {spec.env_id!r} with observation space"
                    f" {observation_space} and action space {action_space}; the fleet's other"
                    f" envs have {spec.single_observation_space} and {spec.single_action_space}"
                    " (every host must serve the same env)"
                )

    def _request(self, transport: BaseTransport, kind: str, ticket: int, a: Any, b: Any) -> bool:
        if kind == _STOP:
            return False
        try:
            route, body = self._request_body(kind, a, b)
            rows = self._rows(kind, transport.post(route, body))
        except Exception as exc:  # every failure is reported; none may kill the thread
            self._fail(ticket, exc)
            return False
        if self._stop.is_set():
            return False
        self.answered_at = time.monotonic()
        self._events.put(Answer(self, ticket, rows))
        return True

    def _request_body(self, kind: str, a: Any, b: Any) -> tuple[str, dict[str, Any]]:
        if kind == _STEP:
            return routes.STEP, step_request(self.env_key, self._wire_actions(a, b))
        return routes.RESET, reset_request(self.env_key, a, b)

    def _rows(self, kind: str, answer: dict[str, Any]) -> StreamRows:
        if kind == _STEP:
            return self._decode(*read_step(answer))
        observation, info = read_reset(answer)
        return self._decode(observation, None, None, None, info)

    def _fail(self, ticket: int, error: BaseException) -> None:
        self._failed = True
        fault = classify(error)
        reason = self.spec.endpoint.reason(error)
        if fault is Fault.MISSING:
            fault, reason = self._after_missing(reason)
        if fault in (Fault.ENV, Fault.FATAL) and self.env_key is not None:
            # The server process still holds the env: free it before anything is remade.
            close_quietly(self.spec.endpoint, self.env_key)
        if fault is Fault.HOST and isinstance(error, RemoteTimeout):
            reason = f"no answer within {self.spec.endpoint.step_timeout:g} s"
        if not self._stop.is_set():
            self._events.put(Failed(self, ticket, fault, error, reason))

    def _after_missing(self, reason: str) -> tuple[Fault, str]:
        """The server forgot this env: did it restart (new incarnation) or only drop it?"""
        transport = self.spec.endpoint.transport(short=True)
        try:
            health = transport.get(routes.HEALTH)
        except RemoteEnvError as exc:
            return Fault.HOST, self.spec.endpoint.reason(exc)
        finally:
            transport.close()
        if health_incarnation(health) != self.incarnation:
            return Fault.HOST, "the server restarted (new incarnation)"
        return Fault.ENV, reason

    # ---------------------------------------------------------------- values

    def _wire_actions(self, actions: Any, needs: np.ndarray | None) -> Any:
        spec = self.spec
        if not spec.multi_agent:
            return value_to_wire(spec.batched_action_space, actions)
        values = single_values(spec.single_action_space, actions, spec.count)
        return [
            value_to_wire(spec.single_action_space, value) if need else None
            for value, need in zip(values, needs, strict=True)
        ]

    def _decode(
        self, wire_obs: Any, wire_reward: Any, wire_terminated: Any, wire_truncated: Any, info: Any
    ) -> StreamRows:
        """The rows of a step answer's fields, or of a reset answer's (``wire_reward``,
        ``wire_terminated`` and ``wire_truncated`` ``None``: zeros)."""
        spec = self.spec
        if spec.multi_agent:
            return self._decode_agents(wire_obs, wire_reward, wire_terminated, wire_truncated, info)
        n = spec.count
        obs = value_from_wire(spec.batched_observation_space, wire_obs)
        if wire_reward is not None:
            reward = np.array(wire_reward, dtype=np.float64)
            terminated = np.array(wire_terminated, dtype=np.bool_)
            truncated = np.array(wire_truncated, dtype=np.bool_)
        else:
            reward = np.zeros(n, dtype=np.float64)
            terminated = np.zeros(n, dtype=np.bool_)
            truncated = np.zeros(n, dtype=np.bool_)
        info = vector_info_from_wire(
            info, spec.single_observation_space, lists_are_objects=self._lists_are_objects
        )
        return StreamRows(np.ones(n, dtype=np.bool_), obs, reward, terminated, truncated, info)

    def _decode_agents(
        self, wire_obs: Any, wire_reward: Any, wire_terminated: Any, wire_truncated: Any, info: Any
    ) -> StreamRows:
        spec = self.spec
        n = spec.count
        space = spec.single_observation_space
        present = np.array([o is not None for o in wire_obs], dtype=np.bool_)
        if is_array_space(space):
            obs = np.zeros((n, *space.shape), dtype=space.dtype)
            for i, o in enumerate(wire_obs):
                if o is not None:
                    obs[i] = value_from_wire(space, o)
        else:
            empty = create_empty_array(space, n, fn=np.zeros)
            placeholders = single_values(space, empty, n)
            items = [
                placeholders[i] if o is None else value_from_wire(space, o)
                for i, o in enumerate(wire_obs)
            ]
            obs = concatenate(space, items, create_empty_array(space, n, fn=np.zeros))
        if wire_reward is not None:
            reward = np.array([0.0 if r is None else r for r in wire_reward], dtype=np.float64)
            terminated = np.array([bool(t) for t in wire_terminated], dtype=np.bool_)
            truncated = np.array([bool(t) for t in wire_truncated], dtype=np.bool_)
        else:
            reward = np.zeros(n, dtype=np.float64)
            terminated = np.zeros(n, dtype=np.bool_)
            truncated = np.zeros(n, dtype=np.bool_)
        infos = [_writable(item) for item in info or [None] * n]
        return StreamRows(present, obs, reward, terminated, truncated, agent_infos(infos, n))


def _writable(info: Any) -> Any:
    """Arrays decoded from an answer may be read-only views; infos are the caller's."""
    if isinstance(info, dict):
        return {key: _writable(value) for key, value in info.items()}
    if isinstance(info, np.ndarray) and not info.flags.writeable:
        return info.copy()
    return info
