"""Response writes are coalesced: a head waits for its body, order is always kept."""

from __future__ import annotations

import asyncio

from agentgpt.envhost.serving import _COALESCE_LIMIT, _CoalescingTransport, uvicorn_config


class RecordingTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed


def _run(scenario):
    async def main():
        transport = RecordingTransport()
        wrapped = _CoalescingTransport(transport, asyncio.get_running_loop())
        await scenario(wrapped)
        await asyncio.sleep(0)  # let a scheduled flush run
        return transport

    return asyncio.run(main())


def test_head_and_body_leave_in_one_write():
    async def scenario(t):
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"{}")

    transport = _run(scenario)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_a_head_without_body_is_flushed_on_the_next_loop_turn():
    async def scenario(t):
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    assert _run(scenario).writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_close_flushes_first_and_delegates_the_rest():
    async def scenario(t):
        t.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        t.close()
        assert t.is_closing()

    transport = _run(scenario)
    assert transport.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and transport.closed


def test_large_bodies_are_not_copied_and_other_writes_pass_through():
    big = b"x" * (_COALESCE_LIMIT + 1)

    async def scenario(t):
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(big)
        t.write(b"tail")

    assert _run(scenario).writes == [b"HTTP/1.1 200 OK\r\n\r\n", big, b"tail"]


def test_config_uses_the_coalescing_protocol():
    config = uvicorn_config(object(), "warning")
    assert config.http.__name__ == "CoalescingHttpToolsProtocol"
    assert config.access_log is False and config.proxy_headers is False
