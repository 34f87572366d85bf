"""Every client test here runs twice: over HTTP and over the streaming session.

Clients pick their transport by themselves (``transport="auto"``); the fixture fixes the
default to each kind in turn, so the same assertions hold whichever way requests travel.
Tests about one transport's own behaviour name it explicitly.
"""

from __future__ import annotations

import pytest

from agentgpt.remote import connect


@pytest.fixture(autouse=True, params=["stream", "http"])
def transport_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(connect, "DEFAULT_TRANSPORT", request.param)
    return request.param
