"""The inference server: a trained policy over HTTP (``docs/serving.md`` is the contract).

``PolicyServer`` owns a :class:`~agentgpt.serve.engine.PolicyEngine`. ``select_action``
calls are queued and merged: whatever calls arrive while a forward pass runs (or within
the optional wait bound) go through the next pass together, each call's answer in its own
order (dynamic batching). Two calls that name the same agent are never merged into one
pass; the later one waits for the next.

Where a pass runs is chosen by how long passes take. A short pass runs on the event loop
itself: a small policy's pass is a chain of small torch ops, each of which takes the GIL
back, so a pass on another thread would not overlap with the loop's HTTP work, only
trade the GIL with it (every hand-over can wait a switch interval) and add two thread
switches per pass; calls that arrive meanwhile wait in the socket buffers and join the
next pass. Once passes take longer than ``inline_pass_limit`` (a large model, or many
agents per pass), they move to one inference thread, so the loop goes on answering other
calls while one runs. Every other engine call runs on that thread, one at a time.

The HTTP side is the service kit's (:mod:`agentgpt.service`): bearer keys checked in
constant time, body limits, JSON or MessagePack on every route, errors as
``{"error": {"type", "message"}}``. With ``watch`` the server reloads the run's newest
checkpoint while serving: calls already in a pass finish on the old weights, and agents
keep their contexts when the spaces match.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.routing import Route

from agentgpt.serve.engine import (
    DEFAULT_AGENT_IDLE_TIMEOUT,
    DEFAULT_MAX_AGENTS,
    ActRequest,
    PolicyEngine,
    find_model_dir,
    load_model,
)
from agentgpt.serve.requests import invalid
from agentgpt.service.app import Payload, service_app
from agentgpt.service.errors import ApiError
from agentgpt.service.keys import ApiKeys
from agentgpt.service.serving import http_url, listening_socket, uvicorn_config

__all__ = [
    "DEFAULT_INLINE_PASS_LIMIT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_SAGEMAKER_MODEL_DIR",
    "DEFAULT_SAGEMAKER_PORT",
    "METHODS",
    "PolicyServer",
]

logger = logging.getLogger("agentgpt.serve")

#: SageMaker's own request limit (6 MB) is the default.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
#: Where a SageMaker inference container finds its model, and the port it serves on.
DEFAULT_SAGEMAKER_MODEL_DIR = "/opt/ml/model"
DEFAULT_SAGEMAKER_PORT = 8080

#: After a pass that merged calls of several clients, this many passes count as shared
#: (each first waits ``batch_wait``, or turns the loop ``_GATHER_TURNS`` times, for more
#: calls) before calls count as serial again.
_SHARED_PASSES = 64
#: While several clients are calling, the event loop turns this many times after a
#: pass's first call arrives before the pass takes the queued calls (with no batch wait):
#: on the reference machine 4 turns merged the most calls per pass for the least CPU per
#: call, more added turns with nothing to read.
_GATHER_TURNS = 4
#: Passes run on the event loop while recent ones (a moving average of their CPU time)
#: took at most this long.
DEFAULT_INLINE_PASS_LIMIT = 0.005
#: Weight of the newest pass in that moving average.
_PASS_TIME_WEIGHT = 0.2

#: The ``method`` values ``/invocations`` accepts.
METHODS = (
    "select_action",
    "sample_action",
    "get_control_value",
    "set_control_value",
    "get_num_input_states",
    "set_num_input_states",
    "info",
)


class _Pending:
    """A queued ``select_action`` call and the future its answer goes to."""

    __slots__ = ("future", "request")

    def __init__(self, request: ActRequest, future: asyncio.Future) -> None:
        self.request = request
        self.future = future


class PolicyServer:
    """Serves a trained agent's actions over HTTP.

    ``model_dir``: a run directory (or a model directory holding ``checkpoint.pt``).
    ``api_keys``: accepted bearer keys; none serves everyone as one anonymous caller
    (only sensible on loopback). ``batch_wait`` (seconds): while several clients are
    calling, a forward pass waits this long after its first call for more to join (0:
    merge what the event loop has read after turning a few times).
    ``inline_pass_limit`` (seconds): passes run on the event loop while recent ones took
    at most this long, else on the inference thread (0: always on the thread).
    ``watch`` reloads newer checkpoints every ``watch_interval`` seconds.
    ``.app`` is the ASGI app; ``.run()`` serves it with uvicorn.
    """

    def __init__(
        self,
        model_dir: str | Path,
        api_keys: list[str] | tuple[str, ...] | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_agents: int = DEFAULT_MAX_AGENTS,
        max_agents_per_session: int | None = None,
        agent_idle_timeout: float = DEFAULT_AGENT_IDLE_TIMEOUT,
        batch_wait: float = 0.0,
        inline_pass_limit: float = DEFAULT_INLINE_PASS_LIMIT,
        max_batch_agents: int = 4096,
        watch: bool = False,
        watch_interval: float = 2.0,
        seed: int = 0,
        debug: bool = False,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if batch_wait < 0:
            raise ValueError("batch_wait must be >= 0")
        if inline_pass_limit < 0:
            raise ValueError("inline_pass_limit must be >= 0")
        self.model_dir = find_model_dir(model_dir)
        self.keys = ApiKeys(api_keys)
        self.engine = PolicyEngine(
            load_model(self.model_dir),
            max_agents=max_agents,
            max_agents_per_session=max_agents_per_session,
            agent_idle_timeout=agent_idle_timeout,
            seed=seed,
        )
        self.max_body_bytes = int(max_body_bytes)
        self.batch_wait = float(batch_wait)
        self.inline_pass_limit = float(inline_pass_limit)
        self.max_batch_agents = int(max_batch_agents)
        self.watch = watch
        self.watch_interval = float(watch_interval)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._held: deque[_Pending] = deque()
        #: Calls of the engine running on the inference thread: a pass runs on the event
        #: loop only when there are none (the engine is not thread-safe).
        self._executor_busy = 0
        #: Moving average of the CPU time of passes (seconds), which decides where they run.
        self._pass_time = 0.0
        #: Passes left until calls count as serial again (merged calls were seen).
        self._shared_passes = 0
        self.batches = 0
        self.passes_on_loop = 0
        self.batched_requests = 0
        self.batched_agents = 0
        handlers: dict[str, Callable[[str, Payload], Awaitable[Payload]]] = {
            "select_action": self._select_action,
            "sample_action": self._engine_call(self.engine.sample_action),
            "get_control_value": self._engine_call(self.engine.get_control_value),
            "set_control_value": self._engine_call(self.engine.set_control_value),
            "get_num_input_states": self._engine_call(self.engine.get_num_input_states),
            "set_num_input_states": self._engine_call(self.engine.set_num_input_states),
            "info": self._info,
        }
        self._methods = handlers
        common: dict[str, Any] = {
            "keys": self.keys,
            "max_body_bytes": self.max_body_bytes,
            "debug": debug,
            "logger": logger,
        }
        #: The ASGI application (Starlette).
        self.app = service_app(
            post={
                "/select_action": self._select_action,
                "/invocations": self._invocations,
                "/sample_action": handlers["sample_action"],
            },
            get={
                "/control_value": handlers["get_control_value"],
                "/num_input_states": handlers["get_num_input_states"],
                "/info": self._info,
            },
            public={"/ping": self._ping},
            lifespan=self._lifespan,
            **common,
        )
        # PUT routes: the same endpoints (auth, limits, negotiation, errors), on PUT.
        setters = service_app(
            post={
                "/control_value": handlers["set_control_value"],
                "/num_input_states": handlers["set_num_input_states"],
            },
            get={},
            public={},
            lifespan=_no_lifespan,
            **common,
        )
        for route in setters.routes:
            if isinstance(route, Route):
                self.app.router.routes.append(Route(route.path, route.endpoint, methods=["PUT"]))

    # ------------------------------------------------------------------ running

    def run(self, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
        """Serve until interrupted. Prints the URL once the socket is bound."""
        import uvicorn

        sock = listening_socket(host, port)
        url = http_url(host, sock.getsockname()[1])
        print(f"AgentGPT policy server for {self.engine.model.run_name} on {url}", flush=True)
        try:
            uvicorn.Server(uvicorn_config(self.app, log_level)).run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        import torch

        self._executor = concurrent.futures.ThreadPoolExecutor(1, "agentgpt-inference")
        # One thread per forward pass: passes are small and come back to back, and on a
        # busy machine a pass split over threads waits at every op for a thread that lost
        # its core. OpenMP keeps the setting per thread, so both threads that run passes
        # (the event loop's, for short passes, and the inference thread) get it.
        torch.set_num_threads(1)
        await asyncio.get_running_loop().run_in_executor(self._executor, torch.set_num_threads, 1)
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._batch_loop()), loop.create_task(self._evict_loop())]
        if self.watch:
            tasks.append(loop.create_task(self._watch_loop()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the inference thread."""
        assert self._executor is not None
        self._executor_busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._executor_busy -= 1

    # ------------------------------------------------------------------ batching

    async def _select_action(self, owner: str, payload: Payload) -> Payload:
        request = self.engine.prepare_act(owner, payload)
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(request, future))
        result = await future
        if isinstance(result, ApiError):
            raise result
        return result

    def _take(self) -> list[_Pending]:
        """The next batch: held calls first, then queued ones, in arrival order; a call
        whose agents are already in the batch (and every later one) waits."""
        assert self._queue is not None
        while True:
            try:
                self._held.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        if len(self._held) == 1 and not self._held[0].future.cancelled():
            return [self._held.popleft()]  # a lone call: nothing to keep it apart from
        batch: list[_Pending] = []
        taken: dict[tuple[str, str], set[Any]] = {}  # the ids in the batch, per scope
        agents = 0
        while self._held:
            item = self._held[0]
            if item.future.cancelled():
                self._held.popleft()
                continue
            request = item.request
            size = len(request.agent_ids)
            ids = request.id_set
            scope_ids = taken.get(request.scope_key)
            if batch and (
                (scope_ids is not None and not scope_ids.isdisjoint(ids))
                or agents + size > self.max_batch_agents
            ):
                break
            self._held.popleft()
            batch.append(item)
            if scope_ids is None:
                taken[request.scope_key] = set(ids)
            else:
                scope_ids |= ids
            agents += size
        return batch

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        while True:
            if not self._held:
                self._held.append(await self._queue.get())
                if self.batch_wait > 0 and self._shared_passes:
                    # Other clients are calling too: give their calls time to join.
                    await asyncio.sleep(self.batch_wait)
                elif self._shared_passes:
                    # Let the loop turn a few times first: calls already in the socket
                    # buffers (a pass on the loop held them there) are read and join.
                    for _ in range(_GATHER_TURNS):
                        await asyncio.sleep(0)
            batch = self._take()
            if not batch:
                continue
            requests = [item.request for item in batch]
            if len(batch) > 1:
                self._shared_passes = _SHARED_PASSES
            else:
                self._shared_passes = max(self._shared_passes - 1, 0)
            on_loop = (
                self._executor_busy == 0
                and self.inline_pass_limit > 0
                and self._pass_time <= self.inline_pass_limit
            )
            try:
                if on_loop:
                    results = self._act(requests)
                    self.passes_on_loop += 1
                else:
                    results = await self._run(self._act, requests)
            except Exception as exc:  # a bug: answer every caller with a 500
                logger.exception("a forward pass failed")
                from agentgpt.service.errors import internal_error

                results = [internal_error(exc)] * len(batch)
            self.batches += 1
            self.batched_requests += len(batch)
            self.batched_agents += sum(len(item.request.agent_ids) for item in batch)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
            if on_loop:
                # Let the answers go out and newly arrived calls queue for the next pass.
                await asyncio.sleep(0)

    def _act(self, requests: list[ActRequest]) -> list[dict[str, Any] | ApiError]:
        """One pass, timed into the moving average that decides where passes run.

        The time is the thread's CPU time, not the wall clock: a pass preempted on a busy
        machine, or one waiting for the GIL on the inference thread, is no longer, and
        counting the wait would keep passes on the thread where they wait the most.
        """
        began = time.thread_time()
        try:
            return self.engine.act(requests)
        finally:
            elapsed = time.thread_time() - began
            self._pass_time += _PASS_TIME_WEIGHT * (elapsed - self._pass_time)

    # ------------------------------------------------------------------ other routes

    def _engine_call(
        self, method: Callable[[str, Payload], Payload]
    ) -> Callable[[str, Payload], Awaitable[Payload]]:
        async def handler(owner: str, payload: Payload) -> Payload:
            return await self._run(method, owner, payload)

        return handler

    async def _info(self, owner: str, payload: Payload) -> Payload:
        limits = {
            "max_body_bytes": self.max_body_bytes,
            "batch_wait_s": self.batch_wait,
            "inline_pass_limit_s": self.inline_pass_limit,
            "max_batch_agents": self.max_batch_agents,
        }
        answer = await self._run(self.engine.info, owner, payload, limits)
        answer["stats"].update(
            {
                "batches": self.batches,
                "passes_on_event_loop": self.passes_on_loop,
                "batched_requests": self.batched_requests,
                "batched_agents": self.batched_agents,
                "mean_requests_per_batch": self.batched_requests / self.batches
                if self.batches
                else 0.0,
                "mean_agents_per_batch": self.batched_agents / self.batches
                if self.batches
                else 0.0,
            }
        )
        answer["watch"] = self.watch
        return answer

    async def _invocations(self, owner: str, payload: Payload) -> Payload:
        method = payload.get("method")
        handler = self._methods.get(method) if isinstance(method, str) else None
        if handler is None:
            raise invalid(f"method must be one of {list(METHODS)}, got {method!r}")
        return await handler(owner, payload)

    def _ping(self) -> Payload:
        return {"status": "ok"}

    # ------------------------------------------------------------------ background

    async def _evict_loop(self) -> None:
        interval = min(max(self.engine.agent_idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            evicted = await self._run(self.engine.evict_idle)
            if evicted:
                logger.info("evicted %d idle agent(s)", evicted)

    async def _watch_loop(self) -> None:
        """Reload the checkpoint when it changes; the swap happens between passes."""
        from agentgpt.agent.checkpoint import CHECKPOINT_FILE

        path = self.model_dir / CHECKPOINT_FILE
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime == self.engine.model.mtime_ns:
                continue
            try:
                # Loading reads and builds off the inference thread: serving goes on.
                model = await loop.run_in_executor(None, load_model, self.model_dir)
            except Exception:
                logger.exception("reloading %s failed; serving the previous weights", path)
                self.engine.model.mtime_ns = mtime  # do not retry this same file
                continue
            if model.checksum == self.engine.model.checksum:
                self.engine.model.mtime_ns = model.mtime_ns
                continue
            kept = await self._run(self.engine.swap, model)
            logger.info(
                "reloaded %s (%s); agent contexts %s",
                path,
                model.checksum[:19],
                "kept" if kept else "cleared (the spaces changed)",
            )


@contextlib.asynccontextmanager
async def _no_lifespan(app: Any) -> AsyncIterator[None]:
    yield
