"""The env server: the protocol's routes over the env table (``docs/protocol.md`` is the contract).

``EnvServer`` owns the state (API keys, the registry of envs that may be made, the env table,
the worker threads that run env calls) and implements each route as a handler on plain maps.
The HTTP side (a Starlette app: auth, body limits, content negotiation, error rendering) is
built in :mod:`agentgpt.envhost.app`, and :mod:`agentgpt.envhost.serving` hands it to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from agentgpt._version import __version__
from agentgpt.envhost import errors
from agentgpt.envhost.adapters import AUTORESET_MODES
from agentgpt.envhost.app import Payload, protocol_app
from agentgpt.envhost.auth import ApiKeys
from agentgpt.envhost.builders import build_single, build_vector
from agentgpt.envhost.registry import EnvRegistry, Factory
from agentgpt.envhost.serving import uvicorn_config
from agentgpt.envhost.sessions import EnvTable, Session
from agentgpt.envhost.workers import WorkerPool

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ENVS_PER_KEY",
    "EnvServer",
]

logger = logging.getLogger("agentgpt.envhost")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ENVS_PER_KEY = 256
DEFAULT_IDLE_TIMEOUT = 3600.0
_SHUTDOWN_CLOSE_TIMEOUT = 10.0

_VECTORIZATION_MODES = ("sync", "async")


# ---------------------------------------------------------------------------- field parsing


def _int_field(payload: Payload, name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_argument(f"{name} must be an integer, got {value!r}")
    return value


def _seed_field(payload: Payload) -> int | None:
    seed = _int_field(payload, "seed")
    if seed is not None and seed < 0:
        raise errors.invalid_argument(f"seed must be non-negative, got {seed}")
    return seed


def _str_field(payload: Payload, name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise errors.invalid_argument(f"{name} must be a non-empty string, got {value!r}")
    return value


def _map_field(payload: Payload, name: str) -> dict[str, Any] | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise errors.invalid_argument(f"{name} must be a map with string keys, got {value!r}")
    return value


def _choice_field(payload: Payload, name: str, choices: Any, default: str) -> str:
    value = payload.get(name)
    if value is None:
        return default
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise errors.invalid_argument(f"{name} must be one of {options} or null, got {value!r}")
    return value


def _env_name(payload: Payload) -> str:
    name = _str_field(payload, "env_name")
    alias = _str_field(payload, "env_id")
    if name is not None and alias is not None and name != alias:
        raise errors.invalid_argument("env_name and env_id (its alias) disagree; send one")
    name = name or alias
    if name is None:
        raise errors.invalid_argument("env_name is required (a Gymnasium id such as CartPole-v1)")
    return name


def _render_mode(payload: Payload) -> str | None:
    mode = _str_field(payload, "render_mode")
    if mode == "human":
        raise errors.invalid_argument(
            "render_mode 'human' is not available: the server has no screen (use 'rgb_array')"
        )
    return mode


# ---------------------------------------------------------------------------- the server


class EnvServer:
    """Hosts Gymnasium and PettingZoo envs over HTTP for remote clients.

    ``api_keys``: accepted bearer keys; ``None`` or empty serves everyone as one anonymous
    owner (only sensible on loopback). ``register``: operator-chosen env names mapped to a
    factory callable or a ``"package.module:factory"`` string, imported now so that a bad
    entry fails at start-up. ``.app`` is the ASGI app; ``.run()`` serves it with uvicorn.
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
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.keys = ApiKeys(api_keys)
        self.registry = EnvRegistry(register)
        self.max_body_bytes = int(max_body_bytes)
        self.debug = debug
        self.incarnation = uuid.uuid4().hex
        self.table = EnvTable(max_envs_per_key, float(idle_timeout), closer=self._schedule_close)
        self._max_threads = max_threads
        self._workers: WorkerPool | None = None
        self._closing: set[asyncio.Task] = set()
        #: The ASGI application (Starlette).
        self.app = protocol_app(
            post={
                "/step": self._step,
                "/reset": self._reset,
                "/make": self._make,
                "/make_vec": self._make_vec,
                "/close": self._close,
            },
            get={
                "/action_space": self._action_space,
                "/observation_space": self._observation_space,
            },
            health=self._health,
            keys=self.keys,
            max_body_bytes=self.max_body_bytes,
            debug=debug,
            lifespan=self._lifespan,
        )

    # ------------------------------------------------------------------ running

    def run(self, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
        """Serve until interrupted. Prints the URL once the socket is bound."""
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        print(f"AgentGPT env server listening on http://{shown}:{bound}", flush=True)
        try:
            uvicorn.Server(uvicorn_config(self.app, log_level)).run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn re-raises Ctrl-C after its graceful shutdown; that is a normal stop
        finally:
            sock.close()

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
        return await self._workers.call(fn, *args)

    async def _call(self, session: Session, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in a worker thread, serialized with every other call on ``session``."""
        session.in_flight += 1
        try:
            async with session.lock:
                if session.closed:
                    raise errors.env_not_found(f"env {session.key!r} was closed")
                return await self._in_thread(fn, *args)
        finally:
            session.in_flight -= 1
            self.table.touch(session)

    def _schedule_close(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._close_session(session))
        session.close_task = task
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_session(self, session: Session) -> None:
        async with session.lock:
            try:
                await self._in_thread(session.adapter.close)
            except Exception:
                logger.exception("closing env %s (%s) failed", session.key, session.name)

    # ------------------------------------------------------------------ routes

    def _health(self) -> Payload:
        return {"status": "ok", "version": __version__, "incarnation": self.incarnation}

    async def _make(self, owner: str, payload: Payload) -> Payload:
        source = self.registry.lookup(_env_name(payload))
        seed = _seed_field(payload)
        kwargs = _map_field(payload, "kwargs") or {}
        render_mode = _render_mode(payload)
        autoreset = _choice_field(payload, "autoreset_mode", AUTORESET_MODES, "disabled")
        self.table.reserve(owner, 1)
        try:
            adapter = await self._in_thread(
                build_single, source, kwargs, render_mode, autoreset, seed
            )
        except BaseException:
            self.table.release(owner, 1)
            raise
        return self._made(owner, source.name, adapter)

    async def _make_vec(self, owner: str, payload: Payload) -> Payload:
        source = self.registry.lookup(_env_name(payload))
        num_envs = _int_field(payload, "num_envs")
        if num_envs is None or num_envs < 1:
            raise errors.invalid_argument(f"num_envs must be an integer >= 1, got {num_envs!r}")
        mode = _choice_field(payload, "vectorization_mode", _VECTORIZATION_MODES, "sync")
        seed = _seed_field(payload)
        kwargs = _map_field(payload, "kwargs") or {}
        render_mode = _render_mode(payload)
        autoreset = _choice_field(payload, "autoreset_mode", AUTORESET_MODES, "next_step")
        self.table.reserve(owner, num_envs)
        try:
            adapter = await self._in_thread(
                build_vector, source, num_envs, mode, kwargs, render_mode, autoreset, seed
            )
        except BaseException:
            self.table.release(owner, num_envs)
            raise
        return self._made(owner, source.name, adapter)

    def _made(self, owner: str, name: str, adapter: Any) -> Payload:
        session = self.table.add(owner, name, adapter)
        logger.info(
            "made %s env %s (%s, %d sub-envs) for %s",
            adapter.kind,
            session.key,
            name,
            adapter.num_envs,
            owner,
        )
        return {
            "env_key": session.key,
            **adapter.make_response(),
            "incarnation": self.incarnation,
        }

    async def _reset(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _str_field(payload, "env_key"))
        if session.adapter.kind == "vector":
            seed = payload.get("seed")  # an integer or a per-sub-env list; the adapter checks
            if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
                raise errors.invalid_argument(f"seed must be non-negative, got {seed}")
        else:
            seed = _seed_field(payload)
        options = _map_field(payload, "options")
        return await self._call(session, session.adapter.reset, seed, options)

    async def _step(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _str_field(payload, "env_key"))
        if "action" not in payload:
            raise errors.invalid_argument("action is required")
        return await self._call(session, session.adapter.step, payload["action"])

    async def _close(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _str_field(payload, "env_key"))
        self.table.remove(session, "closed by POST /close")
        if session.close_task is not None:
            # Answer once the env is really closed, so its resources are free on return.
            await asyncio.shield(session.close_task)
        logger.info("closed env %s (%s) for %s", session.key, session.name, owner)
        return {"closed": True, "env_key": session.key}

    async def _action_space(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _str_field(payload, "env_key"))
        self.table.touch(session)
        return {"action_space": session.adapter.action_space_wire}

    async def _observation_space(self, owner: str, payload: Payload) -> Payload:
        session = self.table.get(owner, _str_field(payload, "env_key"))
        self.table.touch(session)
        return {"observation_space": session.adapter.observation_space_wire}
