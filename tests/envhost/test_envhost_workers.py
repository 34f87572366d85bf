"""The worker pool that takes env calls off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentgpt.envhost.workers import WorkerPool


def test_calls_run_in_other_threads_and_return_or_raise():
    async def main():
        pool = WorkerPool(4)
        loop_thread = threading.get_ident()
        assert await pool.call(threading.get_ident) != loop_thread
        assert await pool.call(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            await pool.call(lambda: 1 / 0)
        pool.shutdown()

    asyncio.run(main())


def test_a_blocked_call_does_not_hold_up_others_until_the_limit():
    started, release = threading.Event(), threading.Event()

    def block() -> bool:
        started.set()
        return release.wait(30)

    async def main():
        pool = WorkerPool(2)
        blocked = asyncio.ensure_future(pool.call(block))
        while not started.is_set():  # the first call holds its thread from here on
            await asyncio.sleep(0.01)
        # A second call gets a second thread while the first is blocked.
        assert await pool.call(lambda: "free") == "free"
        assert pool.num_threads == 2
        release.set()
        assert await blocked is True
        # Idle threads are reused rather than multiplied.
        for _ in range(10):
            await pool.call(lambda: None)
        assert pool.num_threads == 2
        pool.shutdown()

    asyncio.run(main())


def test_cancelling_a_caller_waits_for_the_running_call():
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def env_call():
        started.set()
        release.wait(30)
        finished.append("done")

    async def main():
        pool = WorkerPool(1)
        task = asyncio.ensure_future(pool.call(env_call))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the env call, which cannot be interrupted
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["done"]
        pool.shutdown()

    asyncio.run(main())
