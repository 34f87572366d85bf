"""The env server's uvicorn settings."""

from __future__ import annotations

import importlib.util

from agentgpt.envhost.serving import uvicorn_config


def test_config_turns_off_access_log_and_proxy_headers():
    config = uvicorn_config(object(), "warning")
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.log_level == "warning"
    expected = "httptools" if importlib.util.find_spec("httptools") else "h11"
    assert config.http == expected


def test_overrides_take_precedence():
    config = uvicorn_config(object(), "info", http="h11", timeout_graceful_shutdown=3)
    assert config.http == "h11"
    assert config.timeout_graceful_shutdown == 3
    assert config.access_log is False and config.proxy_headers is False
