"""Worker threads for blocking env calls, with the cheapest hand-off to and from asyncio.

Every env call leaves the event loop so that a slow env never stalls the others. That
hand-off is paid on every single environment step, so instead of
``loop.run_in_executor`` (a ``concurrent.futures.Future`` with its condition variable,
then a second asyncio future chained to it) a call here is one queue put and one
``call_soon_threadsafe`` that resolves an asyncio future directly. Threads are started on
demand up to a maximum, like ``ThreadPoolExecutor``, and are daemons: an env stuck in a
call must not keep the process alive at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerPool"]


def _succeed(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class WorkerPool:
    """Runs blocking callables in up to ``max_threads`` threads; awaitable from asyncio."""

    def __init__(self, max_threads: int, name: str = "env-call") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._max_threads = max_threads
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # One release per idle worker; a submit takes one to claim it (as ThreadPoolExecutor).
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut_down = False

    @property
    def num_threads(self) -> int:
        return len(self._threads)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread.

        A call cannot be interrupted once running, so if the awaiting task is cancelled this
        still waits for it to finish before re-raising: callers hold per-env locks that must
        not be released while the env's code runs.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit((loop, future, fn, args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            raise

    def _submit(self, item: tuple) -> None:
        if self._shut_down:
            raise RuntimeError("the worker pool is shut down")
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self._max_threads:
                    thread = threading.Thread(
                        target=self._work,
                        name=f"{self._name}-{len(self._threads)}",
                        daemon=True,
                    )
                    thread.start()
                    self._threads.append(thread)
        self._queue.put(item)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            loop, future, fn, args = item
            del item
            try:
                result = fn(*args)
            except BaseException as exc:
                resolve, value = _fail, exc
            else:
                resolve, value = _succeed, result
            with contextlib.suppress(RuntimeError):  # the loop closed while we ran
                loop.call_soon_threadsafe(resolve, future, value)
            del loop, future, fn, args, resolve, value
            self._idle.release()

    def shutdown(self) -> None:
        """Let idle workers exit; a worker inside a call exits when the call returns."""
        self._shut_down = True
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
