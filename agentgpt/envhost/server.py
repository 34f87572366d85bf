"""The env server: HTTP routes over the env table (``docs/protocol.md`` is the contract).

A thin Starlette app. Content negotiation, auth and body limits are done by hand in one
request wrapper instead of middleware or per-request models, because the single-env
``/step`` round trip is the product's hot path and every microsecond there is paid on
every environment step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgpt import __version__, wire
from agentgpt.envhost import errors
from agentgpt.envhost.adapters import AUTORESET_MODES
from agentgpt.envhost.auth import ApiKeys
from agentgpt.envhost.builders import build_single, build_vector
from agentgpt.envhost.registry import EnvRegistry, Factory
from agentgpt.envhost.sessions import EnvTable, Session

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

_JSON = wire.JSON_MEDIA_TYPE
_VECTORIZATION_MODES = ("sync", "async")

Payload = dict[str, Any]
Handler = Callable[[str, Payload], Awaitable[Payload]]


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


# ---------------------------------------------------------------------------- headers


class _Headers(NamedTuple):
    """The four request headers the server reads, found in one pass over the raw list."""

    content_type: str | None
    accept: str | None
    authorization: str | None
    content_length: str | None

    @classmethod
    def of(cls, request: Request) -> _Headers:
        found: dict[bytes, str] = {}
        for name, value in request.scope["headers"]:
            if name in _WANTED_HEADERS:
                found[name] = value.decode("latin-1")
        return cls(
            found.get(b"content-type"),
            found.get(b"accept"),
            found.get(b"authorization"),
            found.get(b"content-length"),
        )


_WANTED_HEADERS = frozenset((b"content-type", b"accept", b"authorization", b"content-length"))


class _Negotiated(NamedTuple):
    request: str  # how to decode the body
    response: str  # how to encode the answer


@functools.lru_cache(maxsize=256)
def _negotiate_values(content_type: str | None, accept: str | None) -> _Negotiated:
    sent = wire.media_type_from_header(content_type)
    return _Negotiated(sent or _JSON, wire.media_type_from_header(accept) or sent or _JSON)


def _negotiate(headers: _Headers) -> _Negotiated:
    """Body and answer encodings (clients repeat the same headers, hence the cache)."""
    return _negotiate_values(headers.content_type, headers.accept)


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
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closing: set[asyncio.Task] = set()
        self.app = Starlette(
            # Hot routes first: Starlette tries routes in order.
            routes=[
                Route("/step", self._endpoint(self._step), methods=["POST"]),
                Route("/reset", self._endpoint(self._reset), methods=["POST"]),
                Route("/make", self._endpoint(self._make), methods=["POST"]),
                Route("/make_vec", self._endpoint(self._make_vec), methods=["POST"]),
                Route("/close", self._endpoint(self._close), methods=["POST"]),
                Route(
                    "/action_space",
                    self._endpoint(self._action_space, query=True),
                    methods=["GET"],
                ),
                Route(
                    "/observation_space",
                    self._endpoint(self._observation_space, query=True),
                    methods=["GET"],
                ),
                Route("/health", self._health, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception},
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
        sock.set_inheritable(True)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        print(f"AgentGPT env server listening on http://{shown}:{bound}", flush=True)
        # No proxy-header rewriting: the server never uses client addresses.
        config = uvicorn.Config(
            self.app, log_level=log_level, access_log=False, proxy_headers=False
        )
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn re-raises Ctrl-C after its graceful shutdown; that is a normal stop
        finally:
            sock.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
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
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None

    async def _reap_idle(self) -> None:
        interval = min(max(self.table.idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            removed = self.table.remove_idle()
            if removed:
                logger.info("closed %d idle env(s)", removed)

    # ------------------------------------------------------------------ env calls

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking ``fn(*args)`` in the server's worker threads.

        A plain executor hand-off is the cheapest way off the loop, which matters on the
        per-step path. A running env call cannot be interrupted, so if the waiting request
        is cancelled this still waits for the call to finish: the env's lock must not be
        released while its code runs.
        """
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self._max_threads, thread_name_prefix="env-call"
            )
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            raise

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

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _response_media_type(request: Request) -> str:
        return _negotiate(_Headers.of(request)).response

    def _error_response(self, error: errors.ApiError, media_type: str) -> Response:
        if error.status >= 500:
            if error.debug_traceback:
                logger.error("%s: %s\n%s", error.error_type, error.message, error.debug_traceback)
            else:
                logger.error("%s: %s", error.error_type, error.message)
        body = wire.encode(errors.error_body(error, self.debug), media_type)
        return Response(body, error.status, headers=error.headers, media_type=media_type)

    async def _read_payload(self, request: Request, headers: _Headers) -> Payload:
        length = headers.content_length
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise errors.bad_request(f"invalid Content-Length {length!r}") from None
            if declared > self.max_body_bytes:
                raise errors.payload_too_large(
                    f"the body is {declared} bytes; the limit is {self.max_body_bytes} bytes"
                )
            data = await request.body()
        else:
            chunks = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise errors.payload_too_large(
                        f"the body exceeds the limit of {self.max_body_bytes} bytes"
                    )
                chunks.append(chunk)
            data = b"".join(chunks)
        if not data:
            return {}
        media_type = _negotiate(headers).request
        try:
            payload = wire.decode(data, media_type)
        except wire.WireError as exc:
            kind = "JSON" if media_type == _JSON else "MessagePack"
            raise errors.bad_request(f"the body is not valid {kind}: {exc}") from None
        if not isinstance(payload, dict):
            raise errors.bad_request(
                f"the body must be a map (a JSON object), got {type(payload).__name__}"
            )
        return payload

    def _endpoint(self, handler: Handler, query: bool = False) -> Callable[..., Any]:
        """Wrap ``handler(owner, payload)`` with auth, decoding, encoding and error mapping."""

        async def endpoint(request: Request) -> Response:
            headers = _Headers.of(request)
            media_type = _negotiate(headers).response
            try:
                owner = self.keys.owner_for(headers.authorization)
                if query:
                    payload: Payload = dict(request.query_params)
                else:
                    payload = await self._read_payload(request, headers)
                result = await handler(owner, payload)
                try:
                    body = wire.encode(result, media_type)
                except Exception as exc:
                    raise errors.ApiError(
                        500,
                        "env_error",
                        f"the env's output cannot be encoded: {type(exc).__name__}: {exc}",
                    ) from exc
            except errors.ApiError as error:
                return self._error_response(error, media_type)
            except Exception as exc:
                return self._error_response(errors.internal_error(exc), media_type)
            return Response(body, media_type=media_type)

        return endpoint

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        """Unknown routes and wrong methods, in the protocol's error format."""
        media_type = self._response_media_type(request)
        status = getattr(exc, "status_code", 500)
        if status == 405:
            allowed = (getattr(exc, "headers", None) or {}).get("Allow")
            error = errors.method_not_allowed(
                f"{request.method} is not allowed on {request.url.path}"
                + (f" (use {allowed})" if allowed else ""),
                allowed,
            )
        elif status == 404:
            error = errors.not_found(f"no route {request.url.path!r}")
        else:
            error = errors.ApiError(status, "bad_request", str(getattr(exc, "detail", exc)))
        return self._error_response(error, media_type)

    # ------------------------------------------------------------------ routes

    async def _health(self, request: Request) -> Response:
        media_type = self._response_media_type(request)
        body = {"status": "ok", "version": __version__, "incarnation": self.incarnation}
        return Response(wire.encode(body, media_type), media_type=media_type)

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
