"""The env server: the protocol's routes over the env table (``docs/protocol.md`` is the contract).

``EnvServer`` owns the state (API keys, the registry of envs that may be made, the env table,
the worker threads that run env calls) and implements each route as a handler on plain maps.
The HTTP side (a Starlette app: auth, body limits, content negotiation, error rendering) is
built with the service kit (:mod:`agentgpt.service`), which also hands it to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar

from agentgpt._version import __version__
from agentgpt.core.busy_poll import SERVER_LIMIT_S
from agentgpt.envhost import errors
from agentgpt.envhost.builders import build_single, build_vector
from agentgpt.envhost.kwargs import KwargsRules
from agentgpt.envhost.registry import EnvRegistry, Factory
from agentgpt.envhost.sessions import EnvTable, Session
from agentgpt.envhost.unity.launch import UnityLauncher
from agentgpt.envhost.workers import WorkerPool
from agentgpt.protocol import routes
from agentgpt.protocol.answers import (
    action_space_answer,
    closed_answer,
    health_answer,
    made_answer,
    observation_space_answer,
)
from agentgpt.protocol.errors import ProtocolViolation, one_line
from agentgpt.protocol.openapi import openapi_document
from agentgpt.protocol.requests import (
    parse_env_key,
    parse_make,
    parse_make_vec,
    parse_reset,
    parse_step_action,
)
from agentgpt.service.app import Payload, service_app
from agentgpt.service.browsers import browser_policy
from agentgpt.service.connections import ConnectionLimits
from agentgpt.service.keys import ApiKeys
from agentgpt.service.serving import serve

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ENVS_PER_KEY",
    "EnvServer",
    "default_max_processes",
]

logger = logging.getLogger("agentgpt.envhost")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ENVS_PER_KEY = 256
DEFAULT_IDLE_TIMEOUT = 3600.0
#: Longest call an inline env may make before it goes back to the worker threads.
DEFAULT_INLINE_LIMIT = 0.005
#: Calls in a row over the inline limit that send an inline env back to the threads.
INLINE_OVERRUNS = 2
_SHUTDOWN_CLOSE_TIMEOUT = 10.0


def _ensure_open(session: Session) -> None:
    if session.closed:
        raise errors.env_not_found(f"env {session.key!r} was closed")


def default_max_processes() -> int:
    """The default process limit: the number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- requests

_T = TypeVar("_T")


def _refused(violation: ProtocolViolation) -> errors.ApiError:
    """The answer to a request that breaks the protocol: its documented type and status."""
    return errors.ApiError(violation.kind.status, violation.error_type, violation.message)


def _parse(parse: Callable[..., _T], payload: Payload, *args: Any) -> _T:
    """``parse(payload, *args)``, a protocol violation answered as :func:`_refused`."""
    try:
        return parse(payload, *args)
    except ProtocolViolation as violation:
        raise _refused(violation) from None


# ---------------------------------------------------------------------------- the server


class EnvServer:
    """Hosts Gymnasium and PettingZoo envs over HTTP for remote clients.

    ``api_keys``: accepted bearer keys; ``None`` or empty serves everyone as one anonymous
    owner (only sensible on loopback). ``register``: operator-chosen env names mapped to a
    factory callable or a ``"package.module:factory"`` string, imported now so that a bad
    entry fails at start-up. ``max_processes``: how many env processes (one per sub-env of
    an async vector env, one per env of a Unity build) the server runs at once, over every
    key; ``None`` is the number of CPUs it may use, ``0`` refuses both. ``allow_kwargs``:
    env kwargs, by key, passed to envs although they name code, another env or a resource
    (``"*"``: all; :mod:`agentgpt.envhost.kwargs`). ``allowed_hosts`` and
    ``allowed_origins``: ``Host`` names and web-page origins accepted besides the defaults
    (``docs/security.md``).
    ``inline_envs``: env names whose resets and steps run on the server's event loop
    instead of a worker thread, which saves a thread hand-off per call; only for envs
    whose calls take microseconds (a classic-control env), since the loop serves nobody
    else during such a call. An inline env whose calls take longer than
    ``inline_limit`` seconds, twice in a row, goes back to a worker thread for good, with a
    warning.
    ``busy_poll_us``: how long at most a streaming connection whose requests follow each
    other within that time (a client stepping in a loop) is polled for its next request
    before the server sleeps: on virtual machines, where waking a sleeping process costs
    tens of microseconds, this more than halves a step's round trip (``0``: never;
    :mod:`agentgpt.core.busy_poll`).
    ``.app`` is the ASGI app; ``.run()`` serves it with uvicorn.
    """

    def __init__(
        self,
        api_keys: list[str] | tuple[str, ...] | None = None,
        register: Mapping[str, Factory | str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_envs_per_key: int = DEFAULT_MAX_ENVS_PER_KEY,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        debug: bool = False,
        max_threads: int = 64,
        max_processes: int | None = None,
        allow_kwargs: Iterable[str] | None = None,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        inline_envs: Iterable[str] = (),
        inline_limit: float = DEFAULT_INLINE_LIMIT,
        busy_poll_us: float = SERVER_LIMIT_S * 1e6,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if busy_poll_us < 0:
            raise ValueError("busy_poll_us must be 0 or more")
        self.keys = ApiKeys(api_keys)
        self.registry = EnvRegistry(register)
        self.kwargs_rules = KwargsRules(allow_kwargs)
        self.max_body_bytes = int(max_body_bytes)
        self.debug = debug
        self.incarnation = uuid.uuid4().hex
        self.table = EnvTable(
            max_envs_per_key,
            float(idle_timeout),
            closer=self._schedule_close,
            max_processes=default_max_processes() if max_processes is None else max_processes,
        )
        self._openapi: Payload | None = None
        self._max_threads = max_threads
        self._workers: WorkerPool | None = None
        if isinstance(inline_envs, str):
            raise TypeError("inline_envs must be a list of env names, not a single string")
        self.inline_envs = frozenset(inline_envs)
        self.inline_limit = float(inline_limit)
        self._closing: set[asyncio.Task] = set()
        #: The route handlers (path -> handler), served over HTTP and streams alike.
        self.post_handlers: dict[str, Any] = {
            routes.STEP: self._step,
            routes.RESET: self._reset,
            routes.MAKE: self._make,
            routes.MAKE_VEC: self._make_vec,
            routes.RENDER: self._render,
            routes.CLOSE: self._close,
        }
        self.get_handlers: dict[str, Any] = {
            routes.ACTION_SPACE: self._action_space,
            routes.OBSERVATION_SPACE: self._observation_space,
            routes.OPENAPI: self._openapi_document,
        }
        self.public_handlers: dict[str, Any] = {routes.HEALTH: self._health}
        #: The ASGI application (Starlette).
        self.app = service_app(
            post=self.post_handlers,
            get=self.get_handlers,
            public=self.public_handlers,
            keys=self.keys,
            max_body_bytes=self.max_body_bytes,
            debug=debug,
            lifespan=self._lifespan,
            unencodable=errors.unencodable_answer,
            logger=logger,
            # Without keys: loopback Host names only, no web page (docs/security.md).
            browsers=browser_policy(self.keys.enabled, allowed_hosts, allowed_origins),
            stream=routes.STREAM,
            busy_poll_s=busy_poll_us * 1e-6,
        )

    # ------------------------------------------------------------------ running

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        log_level: str = "info",
        *,
        insecure: bool = False,
        limits: ConnectionLimits | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        """Serve until interrupted. Prints the URL once the socket is bound.

        Without API keys only a loopback ``host`` is accepted, unless ``insecure``
        (:class:`~agentgpt.service.serving.InsecureBindError` otherwise). ``limits``: the
        connection limits (defaults when ``None``); ``tls_cert`` and ``tls_key``: PEM files
        to serve HTTPS with.
        """
        serve(
            self.app,
            name="env server",
            host=host,
            port=port,
            has_keys=self.keys.enabled,
            insecure=insecure,
            limits=limits,
            tls_cert=tls_cert,
            tls_key=tls_key,
            log_level=log_level,
        )

    def connect(self, url: str, api_key: str | None, name: str) -> None:
        """Serve the trainer listening at ``url`` (``ws://`` or ``wss://``) over connections
        this host opens, as ``name``, until interrupted (:mod:`agentgpt.envhost.dial`)."""
        from agentgpt.envhost.dial import dial_out

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(dial_out(self, url, api_key, name))

    def lifespan_context(self) -> contextlib.AbstractAsyncContextManager[None]:
        """What serving needs around it (the idle reaper; every env closed at the end),
        for a server run other than by uvicorn."""
        return self._lifespan(None)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        """Start-up and shutdown: the idle reaper runs while serving; every env is closed after."""
        reaper = asyncio.get_running_loop().create_task(self._reap_idle())
        try:
            yield
        finally:
            reaper.cancel()
            for session in self.table.sessions():
                self.table.remove(session, "the server shut down")
            if self._closing:
                # An env stuck inside a call cannot be closed; do not hang shutdown on it.
                await asyncio.wait(list(self._closing), timeout=_SHUTDOWN_CLOSE_TIMEOUT)
            if self._workers is not None:
                self._workers.shutdown()
                self._workers = None

    async def _reap_idle(self) -> None:
        interval = min(max(self.table.idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            removed = self.table.remove_idle()
            if removed:
                logger.info("closed %d idle env(s)", removed)

    # ------------------------------------------------------------------ env calls

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking ``fn(*args)`` off the event loop, in the server's worker threads."""
        if self._workers is None:
            self._workers = WorkerPool(self._max_threads)
        try:
            return await self._workers.call(fn, *args)
        except errors.ApiError as error:
            if error.debug_traceback is not None:
                self._keep_traceback(error)
            raise

    def _keep_traceback(self, error: errors.ApiError) -> None:
        """An env error's traceback goes to the log at debug level only (the error itself
        is logged as one line); it stays on the error, for its body, in debug mode."""
        logger.debug("%s traceback:\n%s", error.error_type, error.debug_traceback)
        if not self.debug:
            error.debug_traceback = None

    async def _call(self, session: Session, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in a worker thread (on the loop for an inline env), serialized with
        every other call on ``session``."""
        # With no call holding the lock or waiting for it, an inline call skips it (its
        # coroutines are a good share of a fast env's step): it runs to its end without
        # yielding to the loop, so no other call can overlap it.
        free = session.inline and not session.in_flight and not session.lock.locked()
        session.in_flight += 1
        try:
            if free:
                _ensure_open(session)
                return self._inline(session, fn, *args)
            async with session.lock:
                _ensure_open(session)
                if session.inline:
                    return self._inline(session, fn, *args)
                return await self._in_thread(fn, *args)
        finally:
            session.in_flight -= 1
            self.table.touch(session)

    def _inline(self, session: Session, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` right here on the event loop; calls that take too long send the
        env back to the worker threads for good.

        It takes two such calls in a row: on a busy machine one fast call now and then
        spans a preemption (tens of milliseconds of wall-clock time), which says nothing
        about the env, while a slow env is slow every time.
        """
        started = time.perf_counter()
        try:
            return fn(*args)
        except errors.ApiError as error:
            if error.debug_traceback is not None:
                self._keep_traceback(error)
            raise
        finally:
            took = time.perf_counter() - started
            if took <= self.inline_limit:
                session.inline_overruns = 0
            else:
                session.inline_overruns += 1
                if session.inline_overruns >= INLINE_OVERRUNS:
                    session.inline = False
                    logger.warning(
                        "env %s (%s) took %.1f ms in a call, over the inline limit of %.1f ms"
                        " for %d calls in a row; its calls run in worker threads from now on",
                        session.key,
                        session.name,
                        took * 1e3,
                        self.inline_limit * 1e3,
                        INLINE_OVERRUNS,
                    )

    def _schedule_close(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._close_session(session))
        session.close_task = task
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_session(self, session: Session) -> None:
        async with session.lock:
            try:
                await self._in_thread(session.adapter.close)
            except Exception as exc:
                logger.warning(
                    "closing env %s (%s) failed: %s",
                    session.key,
                    session.name,
                    one_line(f"{type(exc).__name__}: {exc}"),
                )
                logger.debug("traceback of the failed close:", exc_info=exc)
            finally:
                self.table.processes_stopped(session)

    # ------------------------------------------------------------------ routes

    def _health(self) -> Payload:
        return health_answer(__version__, self.incarnation)

    async def _make(self, owner: str, payload: Payload) -> Payload:
        request = _parse(parse_make, payload)
        source = self.registry.lookup(request.env_name)
        self.kwargs_rules.check(request.kwargs)
        # A registered Unity player build starts one player process per env.
        processes = 1 if isinstance(source.factory, UnityLauncher) else 0
        self.table.reserve(owner, 1, processes, "Each env of a Unity build is a player. ")
        try:
            adapter = await self._in_thread(build_single, source, request)
        except BaseException:
            self.table.release(owner, 1, processes)
            raise
        return self._made(owner, source.name, adapter, processes)

    async def _make_vec(self, owner: str, payload: Payload) -> Payload:
        request = _parse(parse_make_vec, payload)
        source = self.registry.lookup(request.env_name)
        self.kwargs_rules.check(request.kwargs)
        # An async vector env runs one process per sub-env.
        processes = request.num_envs if request.vectorization_mode == "async" else 0
        self.table.reserve(
            owner,
            request.num_envs,
            processes,
            f"An async vector env runs one process per sub-env: use vectorization_mode"
            f" 'sync' or fewer sub-envs ({request.num_envs} asked). ",
        )
        try:
            adapter = await self._in_thread(build_vector, source, request)
        except BaseException:
            self.table.release(owner, request.num_envs, processes)
            raise
        return self._made(owner, source.name, adapter, processes)

    def _made(self, owner: str, name: str, adapter: Any, processes: int = 0) -> Payload:
        session = self.table.add(owner, name, adapter, processes)
        session.inline = name in self.inline_envs and not processes
        logger.info(
            "made %s env %s (%s, %d sub-envs) for %s",
            adapter.kind,
            session.key,
            name,
            adapter.num_envs,
            owner,
        )
        return made_answer(
            env_key=session.key,
            num_envs=adapter.num_envs,
            observation_space=adapter.observation_space_wire,
            action_space=adapter.action_space_wire,
            agents=adapter.agents,
            autoreset_mode=adapter.autoreset_mode,
            incarnation=self.incarnation,
            metadata=adapter.metadata_wire,
        )

    async def _reset(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _parse(parse_env_key, payload))
        adapter = session.adapter
        num_envs = adapter.num_envs if adapter.kind == "vector" else None
        request = _parse(parse_reset, payload, num_envs)
        return await self._call(session, adapter.reset, request.seed, request.options)

    async def _step(self, owner: str, payload: Payload) -> Payload:
        # The hot path: parsed inline, without _parse's extra call.
        try:
            session = self.table.get(owner, parse_env_key(payload))
            action = parse_step_action(payload)
        except ProtocolViolation as violation:
            raise _refused(violation) from None
        return await self._call(session, session.adapter.step, action)

    async def _render(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _parse(parse_env_key, payload))
        return await self._call(session, session.adapter.render)

    async def _close(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _parse(parse_env_key, payload))
        self.table.remove(session, f"closed by POST {routes.CLOSE}")
        if session.close_task is not None:
            # Answer once the env is really closed, so its resources are free on return.
            await asyncio.shield(session.close_task)
        logger.info("closed env %s (%s) for %s", session.key, session.name, owner)
        return closed_answer(session.key)

    async def _action_space(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _parse(parse_env_key, payload))
        self.table.touch(session)
        return action_space_answer(session.adapter.action_space_wire)

    async def _observation_space(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _parse(parse_env_key, payload))
        self.table.touch(session)
        return observation_space_answer(session.adapter.observation_space_wire)

    async def _openapi_document(self, owner: str, payload: Payload) -> Payload:
        if self._openapi is None:
            self._openapi = openapi_document(__version__)
        return self._openapi
