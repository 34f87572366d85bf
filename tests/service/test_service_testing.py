"""``serve_in_thread``: any ASGI app on a free loopback port, started and stopped cleanly."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agentgpt.service.testing import serve_in_thread


def _app(lifespan=None) -> Starlette:
    async def hello(request):
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)], lifespan=lifespan)


def test_any_asgi_app_is_served_on_its_own_free_port_until_exit():
    events = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("start")
        yield
        events.append("stop")

    with serve_in_thread(_app(lifespan)) as first, serve_in_thread(_app()) as second:
        assert first.startswith("http://127.0.0.1:") and first != second
        assert httpx.get(first).text == httpx.get(second).text == "hello"
        assert events == ["start"]
    assert events == ["start", "stop"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(first)


def test_a_failed_start_up_is_raised():
    @contextlib.asynccontextmanager
    async def failing(app):
        raise RuntimeError("no database")
        yield

    with pytest.raises(RuntimeError, match="failed to start"), serve_in_thread(_app(failing)):
        pass
